"""A fake of Slack's Web API and of response_url on loopback, recording every call.

Point ``SLACK_API_URL`` at ``FakeSlack.api_url`` and give requests a response_url from
``FakeSlack.response_url()``; tests then wait for and inspect the calls the app made.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    method: str  # Web API method (chat.postMessage) or "response_url"
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200  # the HTTP status the fake answered


@dataclass(frozen=True)
class Answer:
    """A scripted answer: an HTTP status, a JSON body (None: a non-JSON error page) and
    headers (``Retry-After``)."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeSlack:
    def __init__(self, port: int = 0) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Condition()
        # Answers for methods that should fail, e.g. {"apps.connections.open": {...}}.
        self.answers: dict[str, dict[str, Any]] = {}
        # The bot token's scopes, sent in every Web API answer's x-oauth-scopes header as
        # Slack does.
        self.scopes = [
            "commands",
            "chat:write",
            "channels:read",
            "groups:read",
            "channels:history",
            "groups:history",
            "files:write",
            "im:write",
            "users:read",
        ]
        # Users' locales as users.info gives them (include_locale): user id → "nb-NO" …
        self.locales: dict[str, str] = {}
        # Files uploaded (files.upload_v2's second step): upload path → the bytes.
        self.uploads: dict[str, bytes] = {}
        # Channels conversations.info knows: id → the channel object's fields.
        self.channels: dict[str, dict[str, Any]] = {}
        # Answers given before the usual ones, in order, per method (``script``).
        self.scripted: dict[str, list[Answer]] = {}
        # Seconds every Web API answer waits (a slow Slack, to be killed mid-request).
        self.delay = 0.0
        # Requests being answered (while ``delay`` holds them): the sender waits for them.
        self.in_flight = 0
        # What chat.postMessage posted, as conversations.history gives it back.
        self.posted: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                if self.path.startswith("/upload/"):
                    with fake._lock:
                        fake.uploads[self.path] = data
                    fake._record(Call("file_upload", self.path, {}, dict(self.headers), 200))
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                    return
                raw = data.decode("utf-8")
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                status, extra = 200, {}
                if self.path.startswith("/api/"):
                    method = self.path[len("/api/") :].split("?")[0]
                    if "?" in self.path:
                        body |= {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                    if fake.delay:
                        with fake._lock:
                            fake.in_flight += 1
                        time.sleep(fake.delay)
                        with fake._lock:
                            fake.in_flight -= 1
                    scripted = fake._scripted(method)
                    if scripted is not None:
                        status, extra = scripted.status, scripted.headers
                        if scripted.body is None:
                            payload, content_type = b"<html>Slack is down</html>", "text/html"
                        else:
                            payload = json.dumps(scripted.body).encode()
                            content_type = "application/json"
                    else:
                        answer = fake._answer(method, body)
                        payload, content_type = json.dumps(answer).encode(), "application/json"
                else:
                    method, payload, content_type = "response_url", b"ok", "text/plain"
                fake._record(Call(method, self.path, body, dict(self.headers), status))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                if method != "response_url":
                    self.send_header("x-oauth-scopes", ",".join(fake.scopes))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                # /_calls?contains=TEXT: how many calls per method (whose body contains TEXT),
                # for a fake running in a process of its own (bench/_fake_slack.py).
                url = urlsplit(self.path)
                if url.path != "/_calls":
                    self.send_error(404)
                    return
                contains = parse_qs(url.query).get("contains", [None])[0]
                payload = json.dumps(fake.counts(contains)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = f"{self.base_url}/api/"
        self._responses = 0

    def response_url(self) -> str:
        self._responses += 1
        return f"{self.base_url}/commands/T1/{self._responses}/hook"

    def script(self, method: str, *answers: Answer) -> None:
        """Answer the next calls of ``method`` so, one answer per call, then as usual."""
        with self._lock:
            self.scripted.setdefault(method, []).extend(answers)

    def _scripted(self, method: str) -> Answer | None:
        with self._lock:
            queue = self.scripted.get(method)
            return queue.pop(0) if queue else None

    def accepted(self, method: str = "chat.postMessage") -> list[Call]:
        """The calls of ``method`` that Slack took (HTTP 200 and ok)."""
        with self._lock:
            return [c for c in self.calls if c.method == method and c.status == 200]

    def _answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method in self.answers:
            return self.answers[method]
        if method in ("conversations.history", "conversations.replies"):
            with self._lock:
                found = [
                    m
                    for m in self.posted
                    if m["channel"] == body.get("channel")
                    and (method == "conversations.history") == (m.get("thread_ts") is None)
                    and (method == "conversations.history" or m["thread_ts"] == body.get("ts"))
                ]
            return {"ok": True, "messages": found}
        if method == "auth.test":
            return {
                "ok": True,
                "user": "examdesk",
                "user_id": "UBOT",
                "bot_id": "BBOT",
                "team": "Exam Office",
                "team_id": "T1",
            }
        if method == "chat.postMessage":
            ts = f"{time.time():.6f}"
            with self._lock:
                self.posted.append(
                    {
                        "channel": body.get("channel"),
                        "ts": ts,
                        "text": body.get("text"),
                        "thread_ts": body.get("thread_ts"),
                        "metadata": body.get("metadata"),
                    }
                )
            return {"ok": True, "channel": body.get("channel"), "ts": ts}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{time.time():.6f}"}
        if method.startswith("views."):
            return {"ok": True, "view": {"id": "V1", **(body.get("view") or {})}}
        if method == "conversations.info":
            channel = body.get("channel")
            if channel not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "channel": {"id": channel, **self.channels[channel]}}
        if method == "users.info":
            user = {"id": body.get("user")}
            asked = body.get("include_locale") in (True, "true", "1")
            if asked and body.get("user") in self.locales:
                user["locale"] = self.locales[body["user"]]
            return {"ok": True, "user": user}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(body.get("users", ""))[1:]}}
        if method == "files.getUploadURLExternal":
            with self._lock:
                n = len(self.uploads) + 1
            return {"ok": True, "upload_url": f"{self.base_url}/upload/F{n}", "file_id": f"F{n}"}
        if method == "files.completeUploadExternal":
            files = body.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        if method == "chat.update":
            return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts")}
        return {"ok": True}

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()

    def counts(self, contains: str | None = None) -> dict[str, int]:
        """Calls per method, only those whose body contains ``contains`` if given."""
        with self._lock:
            calls = list(self.calls)
        counted: dict[str, int] = {}
        for call in calls:
            if contains is None or contains in json.dumps(call.body):
                counted[call.method] = counted.get(call.method, 0) + 1
        return counted

    def clear(self) -> None:
        """Forget the calls so far (a fake shared by several tests)."""
        with self._lock:
            self.calls.clear()

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 30) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([c for c in self.calls if c.method == method]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [c.method for c in self.calls]
                    raise AssertionError(f"expected {count} {method} call(s); saw {seen}")
                self._lock.wait(left)
            return [c for c in self.calls if c.method == method]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
