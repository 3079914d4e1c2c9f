"""`POST /twilio/status`: Twilio's delivery reports (logic in `notifications.status_callback`).

The body is read up to a limit, verified, checked and stored, in that order; 204 only once
the callback is committed, so that a database failure answers 503 and Twilio may try again.
Callbacks that arrive together are stored together, in one transaction (``GroupCommit``).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.config import Settings
from bot.deps import Deps
from bot.web.body import bounded_body
from notifications import status_callback
from store import clock
from store.db import session_scope
from store.group_commit import GroupCommit

log = logging.getLogger(__name__)

# A status callback is a form of a dozen short fields; nothing near this size is one.
MAX_BODY_BYTES = 64 * 1024


def routes(deps: Deps) -> list[Route]:
    settings = deps.settings

    def store_all(callbacks: list[status_callback.Callback]) -> list[int | None]:
        with session_scope(deps.session_factory) as db_session:
            return status_callback.apply_all(
                db_session=db_session, callbacks=callbacks, now=clock.now()
            )

    store = GroupCommit(store_all, name="twilio-status")

    async def twilio_status(request: Request) -> Response:
        body = await bounded_body(request, MAX_BODY_BYTES, what="Twilio status callback", log=log)
        if isinstance(body, Response):
            return body
        try:
            callback = status_callback.verify(
                body=body,
                query=request.url.query,
                signature=request.headers.get("X-Twilio-Signature"),
                auth_token=Settings.secret(settings.twilio_auth_token),
                account_sid=settings.twilio_account_sid,
                public_url=settings.public_url,
            )
        except status_callback.Refused as refusal:
            log.warning(
                "Twilio status callback refused (%d): %s", refusal.status_code, refusal.reason
            )
            return PlainTextResponse(refusal.reason, status_code=refusal.status_code)
        try:
            notice_id = await store(callback)
        except SQLAlchemyError as error:
            log.warning(
                "Twilio status callback for %s not stored (%s); answered 503 for a retry",
                callback.sid,
                type(error).__name__,
            )
            return PlainTextResponse("not stored; try again", status_code=503)
        if notice_id is not None and deps.notice_progress is not None:
            deps.later(deps.notice_progress, notice_id)
        return Response(status_code=204)

    return [Route("/twilio/status", twilio_status, methods=["POST"])]
