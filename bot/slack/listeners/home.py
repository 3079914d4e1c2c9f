"""App Home: the desk (``views.home``), published when someone opens the app's Home tab."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.deps import Deps
from bot.slack.views.home import home_view
from commands import home
from store import clock
from store.db import read_only


def register(app: App, deps: Deps) -> None:
    app.event("app_home_opened")(on_home_opened)


def on_home_opened(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    if event.get("tab", "home") != "home":
        return
    # The event is acknowledged at once; the view is built and published off that path.
    # The user is the one the middleware checked (the event's own).
    context["deps"].later(publish, context["deps"], client, context["actor"])


def publish(deps: Deps, client: WebClient, user_id: str) -> None:
    with deps.session_factory() as db_session:
        read_only(db_session)
        data = home.build(
            db_session=db_session, user_id=user_id, now=clock.now(), tz=deps.settings.tz
        )
    client.views_publish(user_id=user_id, view=home_view(data, tz=deps.settings.tz))
