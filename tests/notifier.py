"""A notifier (deliveries and the outbox) running in this process for a test's duration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.slack.outbox_views import RENDERERS
from notifications.dispatch import Tuning, start_dispatcher

FAST = Tuning(poll_seconds=0.05, maintain_seconds=0.2)


@contextmanager
def running_notifier(
    settings: Any, session_factory: sessionmaker[Session], **kwargs: Any
) -> Iterator[None]:
    stop = start_dispatcher(
        settings, session_factory, tuning=kwargs.pop("tuning", FAST), renderers=RENDERERS, **kwargs
    )
    try:
        yield
    finally:
        stop()
