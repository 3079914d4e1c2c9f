"""What the Slack listeners and web routes need, built once per process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings

log = logging.getLogger(__name__)


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

    def later(self, work: Callable[..., object], *args: object, **kwargs: object) -> Future:
        """Run ``work`` off the request path; a failure is logged, never lost silently."""

        def run() -> object:
            try:
                return work(*args, **kwargs)
            except Exception:
                log.exception("background Slack call %s failed", getattr(work, "__name__", work))
                raise

        return self.slack_out.submit(run)
