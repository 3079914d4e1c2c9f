"""`POST /twilio/status`: Twilio's delivery reports (logic in `notifications.status_callback`)."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.deps import Deps
from bot.settings import Settings
from notifications import status_callback
from store import clock
from store.db import session_scope

log = logging.getLogger(__name__)


def routes(deps: Deps) -> list[Route]:
    settings = deps.settings

    def handle(params: dict[str, str], signature: str | None) -> status_callback.Outcome:
        with session_scope(deps.session_factory) as db_session:
            return status_callback.handle(
                db_session=db_session,
                auth_token=Settings.secret(settings.twilio_auth_token),
                public_url=settings.public_url,
                params=params,
                signature=signature,
                now=clock.now(),
            )

    async def twilio_status(request: Request) -> Response:
        form = await request.form()
        params = {key: str(value) for key, value in form.items()}
        signature = request.headers.get("X-Twilio-Signature")
        outcome = await run_in_threadpool(handle, params, signature)
        if outcome.status_code == 403:
            log.warning("Twilio status callback with a bad or missing signature refused")
            return Response("signature does not match", status_code=403)
        if outcome.notice_id is not None and deps.notice_progress is not None:
            deps.later(deps.notice_progress, outcome.notice_id)
        return Response(status_code=204)

    return [Route("/twilio/status", twilio_status, methods=["POST"])]
