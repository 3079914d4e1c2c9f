"""The language a Slack user's replies are in: the one they chose (`examdesk staff add
--language`), else their Slack locale (``users.info`` with ``include_locale``), else English.

The locale is cached in memory per process for ``KEEP`` (a failed look-up for ``KEEP_FAILED``),
so that only a user's first request in a while waits for Slack, and at most ``TIMEOUT``:
a slash command must be answered within 3 seconds. A look-up that fails answers in English.
Kept in memory rather than on the staff row, so that it also serves people who are not
staff (they are told so in their language) and a read-only request writes nothing.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import SQLAlchemyError

from bot.config import Settings
from bot.deps import Deps
from commands import staff
from commands.language import language_of

log = logging.getLogger(__name__)

KEEP = 60 * 60.0
KEEP_FAILED = 5 * 60.0
TIMEOUT = 1.0
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")


class SlackLocales:
    """Slack users' locales as languages (``nb``, ``en`` or None), cached."""

    def __init__(self, settings: Settings) -> None:
        token = Settings.secret(settings.slack_bot_token)
        # Its own client: a short timeout, as it stands between a request and its answer.
        self._client = (
            WebClient(
                base_url=settings.slack_api_base_url,
                token=token,
                timeout=TIMEOUT,
                retry_handlers=[],
            )
            if token
            else None
        )
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def language(self, user_id: str | None) -> str | None:
        if self._client is None or not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
            return None
        with self._lock:
            cached = self._cache.get(user_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        found, keep = self._look_up(user_id)
        with self._lock:
            self._cache[user_id] = (found, time.monotonic() + keep)
        return found

    def _look_up(self, user_id: str) -> tuple[str | None, float]:
        try:
            answer = self._client.users_info(user=user_id, include_locale=True)
        except (SlackApiError, SlackClientError, OSError) as error:
            log.warning("users.info for %s failed (%s); answering in English", user_id, error)
            return None, KEEP_FAILED
        user = answer.get("user")
        locale = user.get("locale") if isinstance(user, dict) else None
        return language_of(locale if isinstance(locale, str) else None), KEEP


def language_for(deps: Deps, locales: SlackLocales, user_id: str | None) -> str | None:
    """``user_id``'s language: chosen, else their Slack locale; None: English."""
    if user_id is None:
        return None
    try:
        chosen = staff.chosen_language(deps.session_factory, user_id)
    except SQLAlchemyError:
        # The command will meet the same database and say so; the language is no reason to fail.
        log.warning("could not read the language of %s; trying their Slack locale", user_id)
        chosen = None
    return chosen or locales.language(user_id)
