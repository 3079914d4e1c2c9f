"""Request bodies read up to a limit, for the endpoints anyone on the internet can reach."""

from __future__ import annotations

from starlette.requests import Request


async def read_body(request: Request, limit: int) -> bytes | None:
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
