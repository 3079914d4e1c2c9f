"""The background work of `examdesk serve`: the notifier in every process, and the scheduler
in the one process that wins the election (see `bot.leader`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from bot import scheduler
from bot.deps import Deps
from bot.leader import Leadership, elect

log = logging.getLogger(__name__)


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
                )

    def deposed(self) -> None:
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            scheduler.stop_scheduler(running)


def start(deps: Deps, *, on_progress: Callable[..., Any] | None = None) -> Callable[[], None]:
    """Start the notifier and join the scheduler election; returns the callable that stops
    both. ``on_progress`` is handed to the notifier (progress of a notice in Slack)."""
    from notifications.worker import start_dispatcher

    stop_dispatcher = start_dispatcher(deps.settings, deps.session_factory, on_progress=on_progress)
    duty = SchedulerDuty(deps)
    leadership = Leadership(
        elect(deps.engine), on_elected=duty.elected, on_deposed=duty.deposed
    ).start()

    def stop() -> None:
        leadership.stop()  # stops the scheduler first if this process leads
        stop_dispatcher()

    return stop
