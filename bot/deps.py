"""What the Slack listeners and web routes need, built once per process."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.slack.views import limits

log = logging.getLogger(__name__)


@dataclass
class Deps:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    # Answers to the person in front of Slack (a button's result, a refusal, the App Home,
    # a notice's progress) run here so that no acknowledgement waits for them. They are
    # worth nothing later, so they are not kept: what examdesk promises to post goes
    # through the outbox instead, written with the change.
    slack_out: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack-out")
    )
    # Called with a notice id whenever its deliveries change (dispatcher, status callbacks);
    # the question-error listener sets it to update the notice's Slack message.
    notice_progress: Callable[[int], None] | None = None
    # The leader's sweep that brings finished notices' messages to their last state (set
    # with ``notice_progress``).
    settle_notices: Callable[[], None] | None = None

    @cached_property
    def client(self) -> WebClient:
        settings = self.settings
        return WebClient(
            base_url=settings.slack_api_base_url, token=Settings.secret(settings.slack_bot_token)
        )

    def later(self, work: Callable[..., object], *args: object, **kwargs: object) -> None:
        """Run ``work`` off the request path; a failure is logged, never lost silently.

        It runs in a copy of the request's context: worded in the requester's language."""
        self.slack_out.submit(contextvars.copy_context().run, _logged, work, args, kwargs)

    def respond(self, response_url: str, **payload: object) -> None:
        """Post ``payload`` to ``response_url`` (a button's result), off the request path."""
        self.later(_respond, response_url, limits.fit(payload))

    def ephemeral(self, channel: str, user: str, text: str) -> None:
        """A message only ``user`` sees in ``channel``, off the request path."""
        self.later(self.client.chat_postEphemeral, channel=channel, user=user, text=text)

    def close(self) -> None:
        """Finish what was handed over: on shutdown, after the server has stopped."""
        self.slack_out.shutdown(wait=True)


def _respond(response_url: str, payload: dict[str, object]) -> None:
    response = WebhookClient(response_url).send(**payload)
    if response.status_code != 200:
        raise RuntimeError(f"response_url answered HTTP {response.status_code}: {response.body}")


def _logged(
    work: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    try:
        return work(*args, **kwargs)
    except Exception:
        log.exception("background Slack call %s failed", getattr(work, "__name__", work))
        raise
