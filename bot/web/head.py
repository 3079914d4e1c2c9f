"""A request's line and headers read up to a limit, as its body is (bot/web/body.py).

httptools, uvicorn's C parser, takes headers of any size, and gathers a long one piece by
piece at a cost that grows with the square of its length: one client sending a header of a
few megabytes, slowly, would hold the one event loop that answers Slack, Twilio and the
candidates. Slack's, Twilio's and browsers' request heads are a few kilobytes.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# The request line and all headers together (nginx's default buffers hold 32 KiB).
MAX_HEAD_BYTES = 32 * 1024

_REFUSAL = b"request line and headers too large"


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing the connection once a
    request's head passes MAX_HEAD_BYTES before it is complete."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request's line and headers, not its body
        self._head_bytes = 0
        self._heads = 0  # heads completed on this connection

    def data_received(self, data: bytes) -> None:
        in_head, heads = self._in_head, self._heads
        super().data_received(data)
        # Only chunks read wholly inside one head count: a body never does, and a head is
        # refused at most a chunk or two past the limit.
        if not (in_head and self._in_head and heads == self._heads):
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            log.warning("request refused (431): line and headers over %d bytes", MAX_HEAD_BYTES)
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
            )
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._heads = False, 0, self._heads + 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()
