"""`examdesk worker`: a notifier process of its own, for more sending capacity next to `serve`."""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from notifications.dispatch import from_settings, install_stop_signals, start_dispatcher

__all__ = ["run_worker", "start_dispatcher"]

log = logging.getLogger(__name__)

# The thread waiting for the next send slot must get the GIL back within a fraction of a
# slot, which Python's default switch interval (5 ms) is not at 100 SMS a second.
SWITCH_INTERVAL_S = 0.0005


def run_worker(settings: Any, *, engine: Engine, session_factory: sessionmaker[Session]) -> int:
    """Send until SIGTERM or SIGINT; requests already out are finished and recorded."""
    try:
        dispatcher = from_settings(settings, session_factory)
    except ValueError as error:
        log.error("notifier cannot start: %s", error)
        return 1
    install_stop_signals(dispatcher.stop)
    # What is built by now lives as long as the process. Kept out of the collector's full
    # passes, it no longer stalls every thread at once now and then, the one waiting for the
    # next send slot included.
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    log.info(
        "notifier %s running on %s, SMS_PER_SECOND=%s (shared by all running notifiers)",
        dispatcher.worker_id,
        engine.url.render_as_string(hide_password=True),
        settings.sms_per_second,
    )
    dispatcher.run()
    log.info("notifier %s stopped", dispatcher.worker_id)
    return 0
