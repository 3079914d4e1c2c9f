"""A request's line and headers (and a chunked body's trailers) read up to a limit, as its
body is (bot/web/body.py).

httptools, uvicorn's C parser, takes headers of any size, and gathers one that comes in
pieces at a cost that grows with the square of its length: one client sending a header of
a few megabytes, slowly, would hold the one event loop that answers Slack, Twilio and the
candidates. Slack's, Twilio's and browsers' request heads are a few kilobytes.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# Head or trailers still unfinished past this many bytes (nginx's default buffers hold
# 32 KiB of headers).
MAX_HEAD_BYTES = 32 * 1024

_REFUSAL = b"request line and headers too large"


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing the connection once more than
    MAX_HEAD_BYTES of a request's head, or of its trailers, have come unfinished.

    What one read of the socket brings is parsed whole, whatever it holds: the cost that
    needs a bound is that of a head gathered over many reads. So the bytes counted are
    those, other than the body's, of each read that neither ends a head nor a request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unfinished = 0  # bytes counted for the head (or trailers) now coming
        self._ends = 0  # heads and requests ended on this connection
        self._body_bytes = 0  # body passed on during the read being parsed

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
        self._unfinished, self._ends = 0, self._ends + 1
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._unfinished, self._ends = 0, self._ends + 1
        super().on_message_complete()
