"""A request's line and headers (and a chunked body's trailers) read up to a limit in size
and in time, as its body is bounded in size (bot/web/body.py).

httptools, uvicorn's C parser, takes headers of any size, and gathers one that comes in
pieces at a cost that grows with the square of its length: one client sending a header of
a few megabytes, slowly, would hold the one event loop that answers Slack, Twilio and the
candidates. Slack's, Twilio's and browsers' request heads are a few kilobytes.

uvicorn also waits for a head without end: a connection that sends nothing, or one byte now
and then, stays open for ever, and a few hundred of them use up the process's file
descriptors, so that Slack's next request cannot be accepted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# Head or trailers still unfinished past this many bytes (nginx's default buffers hold
# 32 KiB of headers).
MAX_HEAD_BYTES = 32 * 1024
# A head must be complete this long after the connection opened or the last response went
# out. Slack and Twilio send theirs at once; a phone on a poor network takes a second or two.
HEAD_SECONDS = 20.0

_REFUSAL = b"request line and headers too large"


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing the connection once more than
    MAX_HEAD_BYTES of a request's head, or of its trailers, have come unfinished, and closing
    it when no head is complete HEAD_SECONDS after it opened or its last response went out.

    What one read of the socket brings is parsed whole, whatever it holds: the cost that
    needs a bound is that of a head gathered over many reads. So the bytes counted are
    those, other than the body's, of each read that neither ends a head nor a request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unfinished = 0  # bytes counted for the head (or trailers) now coming
        self._ends = 0  # heads and requests ended on this connection
        self._body_bytes = 0  # body passed on during the read being parsed
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Unless the next request's head has come already (pipelined) and is being answered.
        pending = self.cycle is not None and not self.cycle.response_complete
        if not pending and not self.transport.is_closing():
            self._wait_for_head()

    def _wait_for_head(self) -> None:
        self._stop_waiting()
        self._head_timer = self.loop.call_later(HEAD_SECONDS, self._too_slow)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            # A browser's spare connection ends so too: not worth a line at INFO.
            log.debug("connection closed: no complete request head within %.0f s", HEAD_SECONDS)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        ends, self._body_bytes = self._ends, 0
        super().data_received(data)
        if self._ends != ends:
            return
        self._unfinished += len(data) - self._body_bytes
        if self._unfinished > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse()

    def _refuse(self) -> None:
        log.warning("request refused (431): line and headers over %d bytes", MAX_HEAD_BYTES)
        cycle = self.cycle
        # A response already under way on this connection cannot be followed by another.
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
            )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        self._unfinished, self._ends = 0, self._ends + 1
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._unfinished, self._ends = 0, self._ends + 1
        super().on_message_complete()
