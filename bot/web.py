"""The web side of `examdesk serve`: Slack's request URL, health, and the feature routes.

The Bolt app is synchronous; each Slack request runs it in Starlette's thread pool so the
event loop keeps serving other requests (health checks, notice pages) meanwhile.
"""

from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import web_notices, web_twilio
from bot.deps import Deps
from store.db import raw_execute

log = logging.getLogger(__name__)

SLACK_OFF = (
    "Slack over HTTP is not configured here: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET "
    "(or SLACK_APP_TOKEN to use Socket Mode instead)."
)
SOCKET_MODE = "Slack is connected over Socket Mode (SLACK_APP_TOKEN); this URL is not used."


def build_web_app(deps: Deps, bolt_app: App | None, *, slack: str | None = None) -> Starlette:
    """``slack`` says how Slack is connected for /healthz: http, socket or off."""
    slack = slack or ("http" if bolt_app is not None else "off")

    async def slack_events(request: Request) -> Response:
        if bolt_app is None:
            message = SOCKET_MODE if slack == "socket" else SLACK_OFF
            return JSONResponse({"ok": False, "error": message}, status_code=503)
        body = (await request.body()).decode("utf-8")
        bolt_request = BoltRequest(
            body=body, query=request.url.query, headers=dict(request.headers)
        )
        bolt_response, held = await run_in_threadpool(
            deps.holding_later, bolt_app.dispatch, bolt_request
        )
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers=bolt_response.first_headers_without_set_cookie(),
            background=BackgroundTask(deps.release, held) if held else None,
        )

    async def healthz(request: Request) -> JSONResponse:
        problem = await run_in_threadpool(_database_problem, deps)
        return JSONResponse(
            {
                "status": "ok" if problem is None else "failing",
                "database": "ok" if problem is None else problem,
                "slack": slack,
            },
            status_code=200 if problem is None else 503,
        )

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/slack/events", slack_events, methods=["POST"]),
        *web_notices.routes(deps),
        *web_twilio.routes(deps),
    ]
    return Starlette(routes=routes)


def _database_problem(deps: Deps) -> str | None:
    try:
        raw_execute(deps.engine, "SELECT 1")  # a health probe must never queue for a lock
    except Exception as error:
        log.warning("health check: database unreachable: %s", error)
        return f"unreachable: {type(error).__name__}"
    return None
