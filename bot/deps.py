"""What the Slack listeners and web routes need, built once per process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Call = tuple[Callable[..., object], tuple[object, ...], dict[str, object]]
# Per thread: work that `later` holds back until the HTTP response has been sent.
_held = threading.local()


@dataclass
class Deps:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    # Slack Web API calls (change log, views, response_url) run here so that no
    # acknowledgement ever waits for one; `examdesk serve` drains it on shutdown.
    slack_out: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack-out")
    )
    # Called with a notice id whenever its deliveries change (dispatcher, status callbacks);
    # the question-error listener sets it to update the notice's Slack message.
    notice_progress: Callable[[int], None] | None = None

    def later(self, work: Callable[..., object], *args: object, **kwargs: object) -> None:
        """Run ``work`` off the request path; a failure is logged, never lost silently."""
        held: list[Call] | None = getattr(_held, "calls", None)
        if held is not None:
            held.append((work, args, kwargs))
            return
        self.slack_out.submit(_logged, work, args, kwargs)

    def holding_later(self, handle: Callable[..., T], *args: Any) -> tuple[T, list[Call]]:
        """Run ``handle`` and return what it asked to do ``later``, not started yet.

        The web layer starts that work only once the response is on its way: a Web API call
        running in another thread meanwhile would hold the GIL the response is waiting for.
        """
        _held.calls = []
        try:
            return handle(*args), _held.calls
        finally:
            _held.calls = None

    def release(self, held: list[Call]) -> None:
        for work, args, kwargs in held:
            self.slack_out.submit(_logged, work, args, kwargs)


def _logged(
    work: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    try:
        return work(*args, **kwargs)
    except Exception:
        log.exception("background Slack call %s failed", getattr(work, "__name__", work))
        raise
