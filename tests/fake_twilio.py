"""A local stand-in for Twilio's Messages API, for error paths Prism cannot play.

It answers ``POST /2010-04-01/Accounts/{Sid}/Messages.json`` like Twilio (201 and a message
resource), or with a scripted failure per phone number: an HTTP status with a Twilio error
code (429, 5xx, 21211, 21610, …), a delay, or a dropped connection after reading the request.
``GET …/Messages.json?To=`` lists what it accepted, as reconciliation asks Twilio.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"


@dataclass(frozen=True)
class Fail:
    """One scripted answer: HTTP ``status`` with Twilio error ``code``, or ``drop``.

    A 2xx ``status`` accepts the message (after ``delay``), like Twilio would.
    """

    status: int = 500
    code: int | None = None
    drop: bool = False
    delay: float = 0.0


@dataclass
class FakeTwilio:
    delay: float = 0.0
    # Per phone number: answers to give, in order, before accepting.
    script: dict[str, list[Fail]] = field(default_factory=lambda: defaultdict(list))
    # Per phone number: this error for every request.
    always: dict[str, Fail] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._post(self)

            def do_GET(self) -> None:
                fake._get(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeTwilio:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- queries

    def sent_to(self) -> Counter[str]:
        """Accepted messages per phone number: what candidates' phones would receive."""
        with self.lock:
            return Counter(m["to"] for m in self.accepted)

    def bodies(self) -> list[str]:
        with self.lock:
            return [m["body"] for m in self.accepted]

    # ---------------------------------------------------------------- HTTP

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if len(raw) < length:
            # The sender died mid-request (the SIGKILL tests): Twilio never sees such a request.
            handler.close_connection = True
            return
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        to = form.get("To", "")
        if not to:
            self._reply(
                handler,
                400,
                {"code": 21604, "message": "A 'To' phone number is required.", "status": 400},
            )
            return
        # A handler may know when the request's bytes arrived (bench/_fake_twilio.py asks
        # the kernel); else it is now, once the request is read.
        received_at = getattr(handler, "received_at", None) or time.monotonic()
        with self.lock:
            self.requests.append((received_at, to, form))
            answer = self.always.get(to) or (self.script[to].pop(0) if self.script[to] else None)
        time.sleep(self.delay + (answer.delay if answer else 0))
        if not handler.headers.get("Authorization", "").startswith("Basic "):
            self._reply(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        if answer and answer.drop:
            handler.close_connection = True
            handler.connection.close()
            return
        if answer and answer.status >= 300:
            self._reply(
                handler,
                answer.status,
                {
                    "code": answer.code,
                    "message": f"scripted error {answer.code or answer.status}",
                    "more_info": f"https://www.twilio.com/docs/errors/{answer.code}",
                    "status": answer.status,
                },
            )
            return
        now = datetime.now(UTC)
        message = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": ACCOUNT_SID,
            "to": to,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""),
            "status": "queued",
            "date_created": format_datetime(now),
            "date_updated": format_datetime(now),
            "date_sent": None,
            "direction": "outbound-api",
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/x.json",
        }
        with self.lock:
            self.accepted.append(message)
        self._reply(handler, 201, message)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        to = query.get("To", [None])[0]
        with self.lock:
            found = [m for m in reversed(self.accepted) if to is None or m["to"] == to]
        self._reply(
            handler,
            200,
            {
                "messages": found,
                "next_page_uri": None,
                "page": 0,
                "page_size": 100,
                "uri": handler.path,
            },
        )


# -------------------------------------------------------------------- test helpers


def phone(n: int) -> str:
    """A distinct valid Norwegian mobile number per candidate."""
    return f"+4741{n:06d}"


def twilio_settings(api_url: str, **overrides: Any):
    from bot.settings import Settings

    values: dict[str, Any] = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": "+4759440000",
        "twilio_api_url": api_url,
        "public_url": "https://exams.example.org",
        "sms_per_second": 50,
        "smtp_url": None,
        "mail_from": None,
        "slack_support_channel": None,
    }
    return Settings(**(values | overrides))


def seed_candidates(session_factory, code: str, count: int, *, first: int = 1, **fields: Any):
    """Many candidates at once, each with its own phone number."""
    import secrets

    from sqlalchemy import insert, select

    from store.models import Candidate, Test

    with session_factory.begin() as s:
        test_id = s.scalar(select(Test.id).where(Test.code == code))
        rows = [
            {
                "test_id": test_id,
                "number": str(10000 + n),
                "phone": phone(n),
                "email": None,
                "language": "en" if n % 2 else "nb",
                "extra_minutes": 0,
                "incident_minutes": 0,
                "status": "started",
                "notice_token": secrets.token_urlsafe(32),
            }
            | fields
            for n in range(first, first + count)
        ]
        s.execute(insert(Candidate), rows)


def wait_until(predicate, *, timeout: float = 60, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout} s")
        time.sleep(every)
