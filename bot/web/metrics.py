"""`GET /metrics`: Prometheus metrics of this process and of the shared database.

Requests, scheduler job runs and leadership are this process's (Prometheus sums over the
processes it scrapes); deliveries by channel and state are read from the database at each
scrape, so every process reports the same, true counts. When the database cannot be read,
the scrape still answers 200 with this process's metrics, without the deliveries (never
counts that were not read), and the log says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.db import SQLITE_BEGIN
from store.models import Delivery

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "examdesk_http_requests_total", "HTTP requests by route and status", ["route", "status"]
)
LATENCY = Histogram(
    "examdesk_http_request_seconds",
    "Seconds from a request's arrival to its response's start, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOB_RUNS = Counter(
    "examdesk_scheduler_job_runs_total", "Scheduler job runs by job and outcome", ["job", "outcome"]
)
LEADER = Gauge(
    "examdesk_scheduler_leader", "1 while this process leads and runs the scheduler, else 0"
)


def job_ran(event: JobExecutionEvent) -> None:
    """APScheduler listener for EVENT_JOB_EXECUTED and EVENT_JOB_ERROR."""
    JOB_RUNS.labels(event.job_id, "error" if event.exception else "ok").inc()


JOB_EVENTS = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR


class RequestMetrics:
    """ASGI middleware: count and time each request under its route's path template, so a
    page token or a made-up path never becomes a label of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = _route_of(scope)
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                LATENCY.labels(route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUESTS.labels(route, str(status)).inc()


def _route_of(scope: Scope) -> str:
    for route in scope["app"].routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", "other")
    return "other"


class DeliveryCollector(Collector):
    """Deliveries to candidates by channel and state, counted in the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "examdesk_deliveries",
            "Messages to candidates by channel and state (pending, sending, sent, delivered, "
            "failed, undelivered, unknown, logged)",
            labels=["channel", "state"],
        )
        query = select(Delivery.channel, Delivery.status, func.count()).group_by(
            Delivery.channel, Delivery.status
        )
        # A scrape only reads: it must not queue for SQLite's write lock.
        with self.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as connection:
            for channel, state, count in connection.execute(query):
                family.add_metric([channel, state], count)
        yield family


def metrics_endpoint(engine: Engine) -> Callable[[Request], Awaitable[Response]]:
    database = CollectorRegistry(auto_describe=False)
    database.register(DeliveryCollector(engine))

    def render() -> bytes:
        own = generate_latest(REGISTRY)
        try:
            shared = generate_latest(database)
        except SQLAlchemyError as error:
            # This process's counters are still worth the scrape; a 500 would lose them all.
            log.warning(
                "metrics: deliveries left out, the database could not be read (%s)",
                type(error).__name__,
            )
            return own
        return own + shared

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
