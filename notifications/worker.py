"""`examdesk worker`: a notifier process of its own, for more sending capacity next to `serve`."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from notifications.config import NotifierConfig
from notifications.dispatch import (
    ProgressCallback,
    from_settings,
    install_stop_signals,
    start_dispatcher,
)
from notifications.slack_post import Renderer

__all__ = ["run_worker", "start_dispatcher"]

log = logging.getLogger(__name__)


def run_worker(
    settings: NotifierConfig,
    *,
    engine: Engine,
    session_factory: sessionmaker[Session],
    renderers: Mapping[str, Renderer] | None = None,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Send notices' deliveries and the outbox until SIGTERM or SIGINT; requests already out
    are finished and recorded. ``on_progress(notice_id)``: after a notice's deliveries
    changed (its Slack progress message)."""
    try:
        dispatcher = from_settings(
            settings, session_factory, on_progress=on_progress, renderers=renderers
        )
    except ValueError as error:
        log.error("notifier cannot start: %s", error)
        return 1
    install_stop_signals(dispatcher.stop)
    log.info(
        "notifier %s running on %s, SMS_PER_SECOND=%s (shared by all running notifiers)",
        dispatcher.worker_id,
        engine.url.render_as_string(hide_password=True),
        settings.sms_per_second,
    )
    dispatcher.run()
    log.info("notifier %s stopped", dispatcher.worker_id)
    return 0
