"""Request bodies read up to a limit, for the endpoints anyone on the internet can reach."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it is known to exceed ``limit`` (by its Content-Length,
    or while it streams in): nothing more of it is read. A sender who hangs up before the
    end raises Starlette's ClientDisconnect."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def bounded_body(
    request: Request, limit: int, *, what: str, log: logging.Logger
) -> bytes | Response:
    """The body of a request for ``what`` (e.g. "Twilio status callback"), or the answer to
    give instead, logged on the endpoint's ``log`` in one line: 413 for a body over
    ``limit``, closing the connection so that the sender stops sending the rest; 400 for a
    sender gone mid-body (nobody reads it; out of the app it would be a traceback)."""
    try:
        body = await _read_body(request, limit)
    except ClientDisconnect:
        log.warning("%s not read: the sender went away mid-body", what)
        return Response(status_code=400)
    if body is None:
        log.warning("%s refused (413): body over %d bytes", what, limit)
        return PlainTextResponse(
            "request body too large", status_code=413, headers={"connection": "close"}
        )
    return body
