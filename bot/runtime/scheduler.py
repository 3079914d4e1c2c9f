"""The scheduled work of examdesk: automatic delivery (R9), registry refresh (R11), the
notifier's retry sweep, finished notices' Slack messages brought to their last state (R13)
and the daily retention purge. Only the elected leader runs it (see
`bot.runtime.leader`).

Delivery runs two ways, both calling the idempotent `commands.delivery.deliver_due`:
- a sweep every 30 s, which is the guarantee: any deadline, however it came about, is
  delivered at most one sweep late;
- a one-off job at the next upcoming deadline, planned again after every run, which makes a
  deadline known at planning time be delivered on the second.

Jobs live in the `apscheduler_jobs` table of examdesk's own database, so a planned delivery
outlives a restart and passes to the next leader. Nothing runs twice: every job is
idempotent, job ids are fixed (`replace_existing`), late runs are coalesced into one, and
the sweep runs once right at start for deadlines that passed while no process was leading.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.web import metrics
from commands import grading, registry, retention
from commands.context import Ctx
from commands.delivery import SYSTEM_ACTOR, deliver_due, scan
from commands.errors import CommandError
from notifications.channels import Outside
from notifications.dispatch import sweep
from store import clock
from store.db import read_only, session_scope

log = logging.getLogger(__name__)

DELIVER_SWEEP = "deliver-sweep"
DELIVER_AT = "deliver-at-"  # + the deadline; one-off jobs
REGISTRY_REFRESH = "registry-refresh"
NOTIFIER_SWEEP = "notifier-sweep"
RETENTION_PURGE = "retention-purge"
NOTICE_SETTLE = "notice-settle"


@dataclass(frozen=True)
class Cadence:
    deliver_seconds: float = 30
    registry_minutes: float = 30  # R11
    notifier_seconds: float = 30
    retention_hours: float = 24


@dataclass
class _Runtime:
    tz: ZoneInfo
    registry_dir: Path | None
    session_factory: sessionmaker[Session]
    scheduler: BackgroundScheduler
    retention_days: int
    # Page links for the candidates the jobs tell; where their changes are posted and sent
    # as events.
    outside: Outside
    # Brings finished notices' Slack messages to their last state; None without Slack.
    settle_notices: Callable[[], None] | None
    # APScheduler's shutdown holds its job-store lock while it waits for running jobs, so a
    # job that calls the scheduler then would wait forever. Jobs plan under this lock and not
    # at all once stopping is set.
    planning: threading.Lock = field(default_factory=threading.Lock)
    stopping: bool = False


# Jobs in a persistent store are saved as a function's dotted name, not as a closure, so the
# running scheduler leaves what they need here. One scheduler per process.
_runtime: _Runtime | None = None


class _SharedEngineJobStore(SQLAlchemyJobStore):
    """The job table is in examdesk's database on examdesk's engine, which outlives the
    scheduler: stopping the scheduler must not dispose the engine everyone else uses."""

    def shutdown(self) -> None:
        pass


def start_scheduler(
    settings: Settings,
    *,
    engine: Engine,
    session_factory: sessionmaker[Session],
    cadence: Cadence | None = None,
    settle_notices: Callable[[], None] | None = None,
) -> BackgroundScheduler:
    """Start the scheduler of this process (the leader's); stop it with `stop_scheduler`."""
    global _runtime
    cadence = cadence or Cadence()
    # Two "running job" lines per job every 30 s drown the log; the jobs log what they did.
    logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
    scheduler = BackgroundScheduler(
        jobstores={"default": _SharedEngineJobStore(engine=engine)},
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={
            # However late, run once: every job is idempotent and late beats never.
            "coalesce": True,
            "misfire_grace_time": None,
            "max_instances": 1,
        },
        timezone=UTC,
    )
    # Paused first, so that jobs left in the table by an earlier leader wait until the
    # runtime is in place and the job set is brought up to date.
    scheduler.start(paused=True)
    scheduler.add_listener(metrics.job_ran, metrics.JOB_EVENTS)
    _runtime = _Runtime(
        tz=settings.tz,
        registry_dir=settings.registry_dir,
        session_factory=session_factory,
        scheduler=scheduler,
        retention_days=settings.retention_days,
        outside=settings.outside,
        settle_notices=settle_notices,
    )
    _add_jobs(scheduler, settings, cadence)
    scheduler.resume()
    log.info(
        "scheduler started: delivery sweep every %s s and at each deadline, registry refresh "
        "%s, notifier sweep every %s s, retention purge every %s h (RETENTION_DAYS=%s)",
        cadence.deliver_seconds,
        f"every {cadence.registry_minutes} min" if settings.registry_dir else "off",
        cadence.notifier_seconds,
        cadence.retention_hours,
        settings.retention_days,
    )
    return scheduler


def _add_jobs(scheduler: BackgroundScheduler, settings: Settings, cadence: Cadence) -> None:
    """Bring the job table up to date with this configuration."""
    # APScheduler keeps its own wall clock: the program's times are handed to it through
    # clock.wall, so a shifted clock (EXAMDESK_CLOCK_SHIFT) still fires jobs on time.
    now = clock.wall(clock.now())
    scheduler.add_job(
        deliver_job,
        "interval",
        seconds=cadence.deliver_seconds,
        id=DELIVER_SWEEP,
        replace_existing=True,
        next_run_time=now,  # deadlines that passed while nobody led are handled at once
    )
    if settings.registry_dir is not None:
        scheduler.add_job(
            registry_job,
            "interval",
            minutes=cadence.registry_minutes,
            id=REGISTRY_REFRESH,
            replace_existing=True,
            next_run_time=now,
        )
    else:
        _remove(scheduler, REGISTRY_REFRESH)
    scheduler.add_job(
        notifier_job,
        "interval",
        seconds=cadence.notifier_seconds,
        id=NOTIFIER_SWEEP,
        replace_existing=True,
        next_run_time=now,
    )
    scheduler.add_job(
        settle_job,
        "interval",
        seconds=cadence.notifier_seconds,
        id=NOTICE_SETTLE,
        replace_existing=True,
        next_run_time=now,
    )
    scheduler.add_job(
        retention_job,
        "interval",
        hours=cadence.retention_hours,
        id=RETENTION_PURGE,
        replace_existing=True,
        next_run_time=now,
    )


def stop_scheduler(scheduler: BackgroundScheduler) -> None:
    """Stop taking jobs and wait for running ones, so that no delivery is cut in half."""
    global _runtime
    runtime = _runtime if _runtime is not None and _runtime.scheduler is scheduler else None
    if runtime is not None:
        with runtime.planning:
            runtime.stopping = True
    if scheduler.running:
        scheduler.shutdown(wait=True)
    if runtime is not None:
        _runtime = None
    log.info("scheduler stopped")


# ---------------------------------------------------------------- jobs


def deliver_job() -> None:
    """R9: deliver what is due, then plan a run at the next deadline."""
    runtime = _current()
    if runtime is None:
        return
    now = clock.now()
    # The scan only reads (it neither waits for nor blocks the commands that write); the
    # writing transaction takes just the candidates that are due, usually none.
    with runtime.session_factory() as db_session:
        planned = scan(db_session=read_only(db_session), now=now)
    done = []
    if planned.due:
        with session_scope(runtime.session_factory) as db_session:
            ctx = Ctx(
                db_session=db_session,
                actor=SYSTEM_ACTOR,
                tz=runtime.tz,
                now=now,
                outside=runtime.outside,
            )
            done = deliver_due(ctx, candidate_ids=planned.due)
    for item in done:
        log.info(
            "delivered automatically: %s candidate %s%s",
            item.test,
            item.candidate,
            " (new delivery closed)" if item.reopened else "",
        )
    with session_scope(runtime.session_factory) as db_session:
        ctx = Ctx(db_session=db_session, actor=SYSTEM_ACTOR, tz=runtime.tz, now=now)
        told = grading.announce_ready(ctx)
    if told:
        log.info("%s teacher(s) told that grading can start", told)
    with runtime.planning:
        if not runtime.stopping:
            plan_delivery(runtime.scheduler, planned.upcoming)


def registry_job() -> None:
    """R11: bring in the newest export files; staff changes are never undone."""
    runtime = _current()
    if runtime is None or runtime.registry_dir is None:
        return
    folder = runtime.registry_dir
    try:
        with session_scope(runtime.session_factory) as db_session:
            ctx = Ctx(
                db_session=db_session,
                actor=SYSTEM_ACTOR,
                tz=runtime.tz,
                now=clock.now(),
                registry_dir=folder,
                outside=runtime.outside,
            )
            summary = registry.refresh(ctx, folder)
    except CommandError as error:
        # A bad export must not stop the schedule; the next run tries the newest file again.
        log.warning("registry refresh: nothing imported: %s", error)
        return
    log.info("registry refresh: %s", summary.replace("\n", " | "))


def notifier_job() -> None:
    """The notifier's retry sweep and delivery-status reconciliation."""
    runtime = _current()
    if runtime is None:
        return
    with session_scope(runtime.session_factory) as db_session:
        counts = sweep(db_session=db_session, now=clock.now())
    if any(counts.values()):
        log.info("notifier sweep: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))


def settle_job() -> None:
    """R13: finished notices' Slack messages and summaries say their last state."""
    runtime = _current()
    if runtime is not None and runtime.settle_notices is not None:
        runtime.settle_notices()


def retention_job() -> None:
    """Erase the contact data of tests that ended RETENTION_DAYS ago."""
    runtime = _current()
    if runtime is None:
        return
    days = runtime.retention_days
    with session_scope(runtime.session_factory) as db_session:
        ctx = Ctx(
            db_session=db_session,
            actor=SYSTEM_ACTOR,
            tz=runtime.tz,
            now=clock.now(),
            outside=runtime.outside,
        )
        found = retention.purge(ctx, days=days)
        text = retention.summary(found, days=days, dry_run=False, tz=runtime.tz)
    if found:
        log.info("retention: %s", text.replace("\n", " |"))


# ---------------------------------------------------------------- planning


def plan_delivery(scheduler: BackgroundScheduler, when: datetime | None) -> None:
    """Keep exactly one future one-off delivery job, at ``when``.

    Each deadline gets its own job id: the scheduler deletes a one-off job right after
    handing it to a thread, so re-using one id could delete the job just planned.
    """
    keep = _at_id(when) if when is not None else None
    now = clock.wall(clock.now())
    for job in scheduler.get_jobs():
        due_soon = job.next_run_time is not None and job.next_run_time <= now
        if job.id.startswith(DELIVER_AT) and job.id != keep and not due_soon:
            _remove(scheduler, job.id)
    if when is not None and keep is not None and scheduler.get_job(keep) is None:
        scheduler.add_job(
            deliver_job, "date", run_date=clock.wall(when), id=keep, replace_existing=True
        )


def _at_id(when: datetime) -> str:
    return f"{DELIVER_AT}{when.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"


def _remove(scheduler: BackgroundScheduler, job_id: str) -> None:
    # Already gone is fine: it ran, or another plan removed it.
    with contextlib.suppress(JobLookupError):
        scheduler.remove_job(job_id)


def _current() -> _Runtime | None:
    if _runtime is None:
        log.warning("scheduled job ran without a running scheduler; skipped")
    return _runtime
