"""The Slack Web API client every part of examdesk uses."""

from __future__ import annotations

from slack_sdk import WebClient

from bot.config import Settings


def web_client(settings: Settings, *, with_token: bool = True) -> WebClient:
    """A Web API client for SLACK_API_URL (tests point it at a local fake)."""
    token = Settings.secret(settings.slack_bot_token) if with_token else None
    return WebClient(base_url=settings.slack_api_base_url, token=token)
