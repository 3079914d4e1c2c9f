"""The fake Twilio of bench/senders.py, in a process of its own, timing requests by the kernel.

The real Twilio is on other machines: a fake inside the benchmark process would time the
requests it receives under the GIL of the process that also watches the database. Even in a
process of its own, a request is read when the fake's thread gets the CPU, which on a busy
machine can be tens of milliseconds after it arrived; so each request's time is the one the
kernel stamped on its first bytes (``SO_TIMESTAMPNS``): when the sender sent it.

Run as ``python -m bench._fake_twilio DELAY OUT [CALLBACKS]``: it prints its URL, answers
every message after DELAY seconds (tests/fake_twilio.py), and on SIGTERM writes to the file
OUT what it received: ``{"requests": [[time.monotonic(), to], …], "accepted": [[to, body],
…]}``. On Linux the monotonic clock is one for all processes, so those times compare with the
benchmark's.

With CALLBACKS (base URLs of `examdesk serve`, comma-separated: a load balancer's turns), it
also posts signed status callbacks for every message as Twilio does (`storm_reports`), and
OUT holds ``"reported": [[sid, to, status, error_code, answer], …]`` (answer None: no answer).
``"request_bodies"`` has each request's message text, in the order of ``"requests"``.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from bench._support import FakeTwilio, Report

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value


def kernel_timed(
    handler_class: type, realtime_minus_monotonic: float, unstamped: list[int]
) -> type:
    """``handler_class`` that sets ``received_at`` (monotonic) for each request it reads;
    ``unstamped[0]`` counts those the kernel gave no stamp for (timed when read instead)."""

    class KernelTimed(handler_class):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            # The answer's headers and body are written apart; Nagle would hold the body back
            # until the client's delayed ACK, some 40 ms after the DELAY.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def handle_one_request(self) -> None:
            # The client sends its next request only after our answer, so nothing of it is
            # buffered yet: peeking waits for its first bytes and returns their stamp.
            self.received_at = None
            try:
                first, ancillary, _, _ = self.connection.recvmsg(
                    1, socket.CMSG_SPACE(16), socket.MSG_PEEK
                )
            except OSError:
                first, ancillary = b"", []
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", data[:16])
                    self.received_at = seconds + nanoseconds / 1e9 - realtime_minus_monotonic
            if first and self.received_at is None:
                unstamped[0] += 1
            super().handle_one_request()

    return KernelTimed


UNDELIVERED_CODE = 30003  # Twilio: unreachable destination handset


def storm_reports(to: str) -> list[Report]:
    """The status callbacks for the message to ``to``, the same in every run: `sent` then
    `delivered`; every 10th number `undelivered` with an error code instead, every 100th
    `delivered` twice, every 20th out of order (`delivered` before `sent`)."""
    n = int(to[-7:])
    if n % 10 == 0:
        return [Report("sent", 0.2), Report("undelivered", 1.0, UNDELIVERED_CODE)]
    if n % 100 == 1:
        return [Report("sent", 0.2), Report("delivered", 1.0), Report("delivered", 1.5)]
    if n % 20 == 7:
        return [Report("delivered", 0.3), Report("sent", 0.6)]
    return [Report("sent", 0.2), Report("delivered", 1.0)]


class StormReports(dict):
    """``reports_for`` of the fake: every number's callbacks by ``storm_reports``."""

    def get(self, to: str, default: object = None) -> list[Report]:
        return storm_reports(to)


class SpreadTwilio(FakeTwilio):
    """Posts each callback to the next of several servers, as a load balancer would."""

    @property  # type: ignore[override]
    def callbacks_to(self) -> str | None:
        return next(self._turns) if self._bases else None

    @callbacks_to.setter
    def callbacks_to(self, value: str | None) -> None:
        self._bases = value.split(",") if value else []
        self._turns = itertools.cycle(self._bases)


def main(delay: float, out: Path, callbacks: str | None = None) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reports = StormReports() if callbacks else {}
    twilio = SpreadTwilio(delay=delay, callbacks_to=callbacks, reports_for=reports)
    offset = time.time() - time.monotonic()
    unstamped = [0]
    twilio.server.RequestHandlerClass = kernel_timed(
        twilio.server.RequestHandlerClass, offset, unstamped
    )
    # Accepted connections inherit it, so bytes that arrive before accept() are stamped too.
    twilio.server.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    with twilio:
        print(twilio.url, flush=True)
        while not stop.wait(0.5):
            pass
        with twilio.lock:
            received = {
                "requests": [[at, to] for at, to, _ in twilio.requests],
                "request_bodies": [form.get("Body", "") for _, _, form in twilio.requests],
                "unstamped": unstamped[0],
                "accepted": [[m["to"], m["body"]] for m in twilio.accepted],
                "reported": [
                    [r.sid, r.to, r.status, r.error_code, r.answer] for r in twilio.reported
                ],
            }
    out.write_text(json.dumps(received))
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4]))
