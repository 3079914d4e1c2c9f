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

from bot.config import Settings
from bot.slack_calls import SlackCalls

log = logging.getLogger(__name__)
T = TypeVar("T")
# (work, args, kwargs, handover): a handover only passes a call on to the Slack call process.
Call = tuple[Callable[..., object], tuple[object, ...], dict[str, object], bool]
# Per thread: work that `later` holds back until the HTTP response has been sent.
_held = threading.local()


@dataclass
class Deps:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    # Work that reads the database and then calls Slack (reports, App Home, notice
    # progress) runs here so that no acknowledgement ever waits for it.
    slack_out: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack-out")
    )
    # Slack calls that need nothing but their arguments: made by a process of their own.
    slack_calls: SlackCalls = field(init=False)
    # Called with a notice id whenever its deliveries change (dispatcher, status callbacks);
    # the question-error listener sets it to update the notice's Slack message.
    notice_progress: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        settings = self.settings
        self.slack_calls = SlackCalls(
            base_url=settings.slack_api_base_url, token=Settings.secret(settings.slack_bot_token)
        )

    def later(self, work: Callable[..., object], *args: object, **kwargs: object) -> None:
        """Run ``work`` off the request path; a failure is logged, never lost silently."""
        self._after_response((work, args, kwargs, False))

    def slack(self, method: str, **kwargs: object) -> None:
        """The Web API call ``WebClient.<method>(**kwargs)``, off the request path."""
        self._after_response((self.slack_calls.call, (method,), kwargs, True))

    def respond(self, response_url: str, **payload: object) -> None:
        """Post ``payload`` to ``response_url``, off the request path."""
        self._after_response((self.slack_calls.respond, (response_url,), payload, True))

    def _after_response(self, call: Call) -> None:
        held: list[Call] | None = getattr(_held, "calls", None)
        if held is not None:
            held.append(call)
        else:
            self._start(call)

    def _start(self, call: Call) -> None:
        work, args, kwargs, handover = call
        if handover:
            work(*args, **kwargs)
        else:
            self.slack_out.submit(_logged, work, args, kwargs)

    def close(self) -> None:
        """Finish what was handed over: on shutdown, after the server has stopped."""
        self.slack_out.shutdown(wait=True)
        self.slack_calls.close()

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
        for call in held:
            self._start(call)


def _logged(
    work: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    try:
        return work(*args, **kwargs)
    except Exception:
        log.exception("background Slack call %s failed", getattr(work, "__name__", work))
        raise
