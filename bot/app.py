"""The Bolt app: built by a factory, nothing reaches the network at import or build time."""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient

from bot import listeners, middleware
from bot.deps import Deps
from bot.settings import Settings


def web_client(settings: Settings, *, with_token: bool = True) -> WebClient:
    """A Web API client for SLACK_API_URL (tests point it at a local fake)."""
    token = Settings.secret(settings.slack_bot_token) if with_token else None
    return WebClient(base_url=settings.slack_api_base_url, token=token)


class _OurClientWins(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself when no ``token`` is given,
    and then warns that the ``client`` passed as well wins. It does, as meant: authorize()
    gives every request that same token. Only that one false alarm is dropped."""

    message = warning_client_prioritized_and_token_skipped()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


_OUR_CLIENT_WINS = _OurClientWins()


def build_app(deps: Deps, *, client: WebClient | None = None) -> App:
    settings = deps.settings
    bot_token = Settings.secret(settings.slack_bot_token)
    signing_secret = Settings.secret(settings.slack_signing_secret)

    def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        # One workspace, one static token: no auth.test round trip on the first request,
        # which would add latency online and fail outright offline.
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=bot_token)

    logging.getLogger(f"slack_bolt.{App.__name__}").addFilter(_OUR_CLIENT_WINS)
    app = App(
        name="examdesk",
        # Bolt gives each request a copy of this client holding the token from authorize().
        client=client or web_client(settings, with_token=False),
        authorize=authorize,
        signing_secret=signing_secret,
        # Socket Mode requests carry no signature; over HTTP a secret is required (server.py).
        request_verification_enabled=signing_secret is not None,
        # Run the listener, then answer: no ack polling, and the reply rides on the ack.
        process_before_response=True,
    )
    middleware.install(app, deps)
    listeners.register_all(app, deps)
    return app
