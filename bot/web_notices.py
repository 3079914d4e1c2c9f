"""`GET /notices/{token}`: a candidate's in-app notices (logic in `notifications.inapp`)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from bot.deps import Deps
from notifications import inapp
from store import clock
from store.db import session_scope


def routes(deps: Deps) -> list[Route]:
    def render(token: str) -> inapp.Page:
        with session_scope(deps.session_factory) as db_session:
            return inapp.page(
                db_session=db_session, token=token, now=clock.now(), tz=deps.settings.tz
            )

    async def notices(request: Request) -> HTMLResponse:
        page = await run_in_threadpool(render, request.path_params["token"])
        return HTMLResponse(page.html, status_code=page.status, headers=inapp.HEADERS)

    return [Route("/notices/{token}", notices, methods=["GET"])]
