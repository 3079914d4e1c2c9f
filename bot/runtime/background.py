"""The background work of `examdesk serve`: the notifier (notices and the outbox) in every
process, and the scheduler in the one process that wins the election (see `bot.runtime.leader`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from bot.deps import Deps
from bot.runtime import scheduler
from bot.runtime.errors import CliError
from bot.runtime.leader import Leadership, elect
from bot.web.metrics import LEADER


class SchedulerDuty:
    """Runs the scheduler while this process leads, and only then."""

    def __init__(self, deps: Deps, cadence: scheduler.Cadence | None = None) -> None:
        self.deps = deps
        self.cadence = cadence
        self._lock = threading.Lock()
        self._running: BackgroundScheduler | None = None

    def elected(self) -> None:
        with self._lock:
            if self._running is None:
                self._running = scheduler.start_scheduler(
                    self.deps.settings,
                    engine=self.deps.engine,
                    session_factory=self.deps.session_factory,
                    cadence=self.cadence,
                    settle_notices=self.deps.settle_notices,
                )
                LEADER.set(1)

    def deposed(self) -> None:
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            scheduler.stop_scheduler(running)
            LEADER.set(0)


def start(deps: Deps) -> Callable[[], None]:
    """Start the notifier and join the scheduler election; returns the callable that stops
    both (the scheduler first, letting a running delivery finish)."""
    from bot.slack.outbox_views import RENDERERS
    from notifications.worker import start_dispatcher

    try:
        stop_dispatcher = start_dispatcher(
            deps.settings,
            deps.session_factory,
            on_progress=progress_to_slack(deps),
            renderers=RENDERERS,
        )
    except ValueError as error:  # the notifier's configuration is incomplete
        raise CliError(f"the notifier cannot start: {error}") from None
    duty = SchedulerDuty(deps)
    leadership = Leadership(
        elect(deps.engine), on_elected=duty.elected, on_deposed=duty.deposed
    ).start()

    def stop() -> None:
        leadership.stop()
        stop_dispatcher()

    return stop


def progress_to_slack(deps: Deps) -> Callable[[int], None]:
    """The notifier's ``on_progress`` (serve's and `examdesk worker`'s): tell Slack about a
    notice's progress, off the notifier's thread; the listener that shows progress may
    install itself after start."""

    def report(notice_id: int) -> None:
        if deps.notice_progress is not None:
            deps.later(deps.notice_progress, notice_id)

    return report
