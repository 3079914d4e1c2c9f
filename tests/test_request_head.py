"""A request's line and headers are bounded, as its body is: over real HTTP against the
server `examdesk serve` runs (uvicorn with httptools and bot.web.head.BoundedHead).

A client sending a head of megabytes is answered 431 and cut off at once, and the server
goes on answering everybody else; heads of the usual size, bodies up to their endpoints'
own limits and keep-alive connections are untouched.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from fake_slack import FakeSlack
from served import serving, slack_settings

from bot.web import head
from bot.web.head import MAX_HEAD_BYTES


@pytest.fixture
def address(engine, session_factory) -> Iterator[tuple[str, int]]:
    fake = FakeSlack()
    settings = slack_settings(fake, slack_support_channel="C0SUPPORT")
    with serving(settings, engine=engine, session_factory=session_factory) as (_, url):
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)
    fake.close()


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _response(sock: socket.socket) -> bytes:
    """One whole response: its head, then a body of its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += sock.recv(65536)
    return data


def _healthz(address: tuple[str, int], extra: bytes = b"") -> int:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
        return _status(_response(sock))


def _send_until_cut(sock: socket.socket, first: bytes, most: int) -> int:
    """``first``, then ``a`` in pieces of 16 KiB up to ``most`` bytes: how many were sent
    before the server closed the connection (``most`` if it never did)."""
    sent = 0
    sock.sendall(first)
    piece = b"a" * 16 * 1024
    try:
        while sent < most:
            sock.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def _in_pieces(sock: socket.socket, data: bytes, size: int = 4096) -> None:
    """``data`` as a slow client sends it: each piece read by the server on its own."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for start in range(0, len(data), size):
        sock.sendall(data[start : start + size])
        time.sleep(0.005)


CHUNKED = (
    b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
    b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: "
)


@pytest.mark.parametrize(
    "first",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",  # one header without end
        b"GET /notices/",  # a request line without end
        CHUNKED,  # the trailers after a chunked body
    ],
    ids=["header", "url", "trailer"],
)
def test_a_head_of_megabytes_is_refused_431_and_cut_off_and_others_are_answered(address, first):
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sent = _send_until_cut(sock, first, 64 * 1024 * 1024)
        answer = _response(sock)
    assert _status(answer) == 431
    assert b"connection: close" in answer.lower()
    # Cut off near the limit, not after the 64 MiB the client meant to send.
    assert sent < 8 * 1024 * 1024
    assert time.monotonic() - started < 10
    assert _healthz(address) == 200


def test_a_head_coming_slowly_past_the_limit_is_refused(address):
    with socket.create_connection(address, timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            _in_pieces(sock, b"GET /healthz HTTP/1.1\r\nX-Fill: " + b"f" * (MAX_HEAD_BYTES + 8192))
        assert _status(_response(sock)) == 431


def test_heads_of_the_usual_size_and_keep_alive_connections_are_answered(address):
    assert _healthz(address, b"X-Fill: " + b"f" * (MAX_HEAD_BYTES // 2) + b"\r\n") == 200
    # Requests on one connection, each head below the limit and coming slowly, together far
    # above it: the bound is per request.
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"f" * (MAX_HEAD_BYTES * 3 // 4)
    with socket.create_connection(address, timeout=10) as sock:
        for _ in range(4):
            _in_pieces(sock, head + b"\r\n\r\n")
            assert _status(_response(sock)) == 200


def test_a_large_body_is_not_taken_for_a_head(address):
    # 900 KiB to Slack's door, whose body limit is 1 MiB, in one send and then in pieces:
    # the unsigned request is refused for its signature (401), not for its size.
    body = b"a" * (900 * 1024)
    request = (
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    for send in (socket.socket.sendall, lambda sock, data: _in_pieces(sock, data, 65536)):
        with socket.create_connection(address, timeout=10) as sock:
            send(sock, request)
            assert _status(_response(sock)) == 401


@pytest.fixture
def half_a_second(monkeypatch) -> float:
    monkeypatch.setattr(head, "HEAD_SECONDS", 0.5)
    return 0.5


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False


def _trickle_and_be_cut_off(sock: socket.socket) -> None:
    """A head one byte at a time, 0.1 s apart: cut off long before it ends (3.3 s)."""
    started = time.monotonic()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
    assert time.monotonic() - started < 4
    assert _closed_within(sock, 5)


def test_a_connection_that_sends_no_head_is_closed_in_time(address, half_a_second):
    # Silent, or one byte now and then: either would hold a file descriptor for ever.
    with socket.create_connection(address, timeout=10) as silent:
        assert _closed_within(silent, 5)
    with socket.create_connection(address, timeout=10) as trickling:
        _trickle_and_be_cut_off(trickling)
    # The same after an answer on a kept-alive connection (uvicorn's idle timeout ends once
    # a byte has come).
    with socket.create_connection(address, timeout=10) as kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(_response(kept)) == 200
        _trickle_and_be_cut_off(kept)
    assert _healthz(address) == 200


def test_the_time_bound_is_on_the_head_only_and_starts_again_after_each_answer(
    address, half_a_second
):
    body = b"a" * 64
    with socket.create_connection(address, timeout=10) as sock:
        for _ in range(2):
            # The body may take its time (its size is bounded by the endpoint) …
            sock.sendall(
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            for start in range(0, len(body), 16):
                time.sleep(0.25)
                sock.sendall(body[start : start + 16])
            # … and the next request on the connection has its own time for its head.
            assert _status(_response(sock)) == 401
