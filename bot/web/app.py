"""The web side of `examdesk serve`: Slack's request URL, health, and the feature routes.

The Bolt app is synchronous; each Slack request runs it in Starlette's thread pool so the
event loop keeps serving other requests (health checks, notice pages) meanwhile. Bolt sees a
request only once ``bot.slack.door`` has read, verified and parsed it, and only the first
time: a replay or one of Slack's retries is answered without being handled again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config import Settings
from bot.deps import Deps
from bot.slack import door as slack_door
from bot.web import metrics
from bot.web import notices as web_notices
from bot.web import twilio_status as web_twilio
from notifications import outbox
from store import clock
from store.db import raw_execute, read_only
from store.models import Delivery

log = logging.getLogger(__name__)

SLACK_OFF = (
    "Slack over HTTP is not configured here: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
    "(or SLACK_APP_TOKEN to use Socket Mode instead)."
)
SOCKET_MODE = "Slack is connected over Socket Mode (SLACK_APP_TOKEN); this URL is not used."
# The answer to a slash command signed and sent again (Slack never resends one itself).
ALREADY_HANDLED = "This request was already handled; nothing more was changed."
NO_DATABASE = "examdesk cannot reach its database right now; nothing was changed. Try again soon."


def build_web_app(deps: Deps, bolt_app: App | None, *, slack: str | None = None) -> Starlette:
    """``slack`` says how Slack is connected for /healthz: http, socket or off."""
    slack = slack or ("http" if bolt_app is not None else "off")
    routes = [
        _healthz_route(deps, slack),
        Route("/metrics", metrics.metrics_endpoint(deps.engine), methods=["GET"]),
        _slack_route(deps, bolt_app, slack),
        *web_notices.routes(deps),
        *web_twilio.routes(deps),
    ]
    return Starlette(routes=routes, middleware=[Middleware(metrics.RequestMetrics)])


def _slack_route(deps: Deps, bolt_app: App | None, slack: str) -> Route:
    """``POST /slack/events``: the door checks the request, then Bolt handles it."""

    async def slack_events(request: Request) -> Response:
        if bolt_app is None:
            message = SOCKET_MODE if slack == "socket" else SLACK_OFF
            return JSONResponse({"ok": False, "error": message}, status_code=503)
        secret = Settings.secret(deps.settings.slack_signing_secret)
        assert secret is not None  # Slack over HTTP needs it (bot.runtime.server.slack_mode)
        try:
            raw = await slack_door.read_body(request)
            signed = slack_door.verify(secret, raw, request.headers, now=_real_now())
            body = slack_door.parse(raw, request.headers.get("content-type"))
        except slack_door.Refused as refused:
            # One line in our own words: a forged body can write nothing into the log.
            log.warning("Slack request refused (%s): %s", refused.status, refused.reason)
            headers = {"connection": "close"} if refused.status == 413 else None
            return JSONResponse(
                {"ok": False, "error": refused.reason},
                status_code=refused.status,
                headers=headers,
            )
        bolt_request = BoltRequest(
            body=body,
            query=request.url.query,
            headers=dict(request.headers),
            # Bolt skips its own signature check in this mode only; the door has checked
            # the raw bytes, and Bolt gets the very payload the door parsed and checked.
            mode="socket_mode",
        )
        bolt_response = await run_in_threadpool(handle, bolt_request, signed)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers=bolt_response.first_headers_without_set_cookie(),
        )

    def handle(bolt_request: BoltRequest, signed: slack_door.Signed) -> BoltResponse:
        assert bolt_app is not None
        body = bolt_request.body
        if body.get("type") != "url_verification" and "ssl_check" not in body:
            try:
                fresh = slack_door.first_time(
                    deps.engine,
                    slack_door.seen_keys(signed, body),
                    signed_at=signed.signed_at,
                    now=_real_now(),
                )
            except SQLAlchemyError as error:
                log.error(
                    "Slack request not handled: database unreachable (%s)", type(error).__name__
                )
                return _answer(body, 503, NO_DATABASE)
            if not fresh:
                log.info("Slack request already handled (a replay or a retry): not applied again")
                return _answer(body, 200, ALREADY_HANDLED)
        return bolt_app.dispatch(bolt_request)

    return Route("/slack/events", slack_events, methods=["POST"])


def _healthz_route(deps: Deps, slack: str) -> Route:
    settings = deps.settings
    # Which channels really send: "log" means messages are only written to the log.
    sms = "twilio" if settings.twilio_account_sid and settings.twilio_auth_token else "log"
    email = "smtp" if settings.smtp_url else "log"

    async def healthz(request: Request) -> JSONResponse:
        problem = await run_in_threadpool(_database_problem, deps)
        outbox = await run_in_threadpool(_outbox, deps) if problem is None else None
        return JSONResponse(
            {
                "status": "ok" if problem is None else "failing",
                "database": "ok" if problem is None else problem,
                "slack": slack,
                "sms": sms,
                "email": email,
                "outbox": outbox,
            },
            status_code=200 if problem is None else 503,
        )

    return Route("/healthz", healthz, methods=["GET"])


def _real_now() -> datetime:
    # Slack signs with the real time: the program's clock without its test shift.
    return clock.wall(clock.now())


def _answer(body: dict[str, Any], status: int, text: str) -> BoltResponse:
    """A slash command's answer is shown to the user (so always 200); other requests get
    only the status."""
    if "command" not in body:
        return BoltResponse(status=status, body="")
    return BoltResponse(
        status=200,
        body=json.dumps({"response_type": "ephemeral", "text": text}),
        headers={"content-type": "application/json;charset=utf-8"},
    )


def _outbox(deps: Deps) -> dict[str, int]:
    """Messages not yet handed over (notices' deliveries and the outbox's posts, events and
    candidates' messages), and those given up."""
    waiting = Delivery.status.in_(("pending", "sending", "unknown"))
    failed = Delivery.status.in_(("failed", "undelivered"))
    with deps.session_factory() as db_session:
        read_only(db_session)  # a health check must not queue for the write lock
        row = db_session.execute(
            select(
                func.count().filter(waiting).label("pending"),
                func.count().filter(failed).label("failed"),
            ).select_from(Delivery)
        ).one()
        more = outbox.counts(db_session)
    return {"pending": row.pending + more["pending"], "failed": row.failed + more["failed"]}


def _database_problem(deps: Deps) -> str | None:
    try:
        raw_execute(deps.engine, "SELECT 1")  # a health probe must never queue for a lock
    except Exception as error:
        log.warning("health check: database unreachable: %s", error)
        return f"unreachable: {type(error).__name__}"
    return None
