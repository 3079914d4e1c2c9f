"""A local stand-in for Twilio's Messages API, for error paths Prism cannot play.

It answers ``POST /2010-04-01/Accounts/{Sid}/Messages.json`` like Twilio (201 and a message
resource), or with a scripted failure per phone number: an HTTP status with a Twilio error
code (429, 5xx, 21211, 21610, …), a delay, or a dropped connection after reading the request.
``GET …/Messages.json?To=`` lists what it accepted, as reconciliation asks Twilio. For
`examdesk doctor` it also answers ``GET /2010-04-01/Accounts/{Sid}.json`` (the account, with
the credentials checked), ``…/IncomingPhoneNumbers.json?PhoneNumber=``, ``…/SMS/ShortCodes.json``
and Messaging's ``GET /v1/Services/{Sid}``.

Given ``callbacks_to`` (the base URL the server under test listens on), it also plays
Twilio's status callbacks: for every accepted message it POSTs its scripted reports,
signed with the auth token over the message's ``StatusCallback`` URL as Twilio signs them,
each ``after`` seconds from the moment it accepted the message (before the API answer is
even written), and records how the server answered each one.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from twilio.request_validator import RequestValidator

if TYPE_CHECKING:
    from notifications.sms import TwilioTransport

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
    # Twilio's text for the error; some quote the number (21266).
    message: str | None = None


@dataclass(frozen=True)
class Report:
    """One status callback for an accepted message: ``status`` ``after`` seconds later."""

    status: str
    after: float = 0.0
    error_code: int | None = None


@dataclass(frozen=True)
class Reported:
    """A status callback the fake posted, and the server's answer (None: no answer)."""

    sid: str
    to: str
    status: str
    error_code: int | None
    answer: int | None


@dataclass
class FakeTwilio:
    delay: float = 0.0
    # Where the server under test listens; the StatusCallback URL's path and query go there.
    callbacks_to: str | None = None
    # Status callbacks for every accepted message, unless ``reports_for`` has its number.
    reports: list[Report] = field(default_factory=list)
    reports_for: dict[str, list[Report]] = field(default_factory=dict)
    reported: list[Reported] = field(default_factory=list)
    # Per phone number: answers to give, in order, before accepting.
    script: dict[str, list[Fail]] = field(default_factory=lambda: defaultdict(list))
    # Per phone number: this error for every request.
    always: dict[str, Fail] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The account as `examdesk doctor` finds it.
    account_status: str = "active"
    account_type: str = "Full"
    numbers: list[str] = field(default_factory=lambda: ["+4759440000"])
    short_codes: list[str] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)  # MG… → friendly name

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
        self._due: list[tuple[float, int, dict[str, str], str]] = []
        self._due_changed = threading.Condition(self.lock)
        self._order = itertools.count()
        self._closing = False
        self._posters = ThreadPoolExecutor(32, thread_name_prefix="fake-twilio-callback")
        self._http = httpx.Client(timeout=30)
        self._scheduler = threading.Thread(target=self._post_when_due, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def transport(self) -> TwilioTransport:
        """examdesk's SMS transport with the fake's credentials, sending from a number it has."""
        # Imported when asked for: the fake served alone (bench/_fake_twilio.py) needs none of it.
        from notifications.sms import TwilioTransport

        return TwilioTransport(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            public_url="https://exams.example.org",
            sender="+4759440000",
            api_url=self.url,
        )

    def __enter__(self) -> FakeTwilio:
        self.thread.start()
        self._scheduler.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            self._closing = True
            self._due_changed.notify()
        self._scheduler.join()
        self._posters.shutdown(wait=True)
        self._http.close()

    # ---------------------------------------------------------------- queries

    def sent_to(self) -> Counter[str]:
        """Accepted messages per phone number: what candidates' phones would receive."""
        with self.lock:
            return Counter(m["to"] for m in self.accepted)

    def bodies(self) -> list[str]:
        with self.lock:
            return [m["body"] for m in self.accepted]

    def callbacks_due(self) -> int:
        """Status callbacks scripted for the messages accepted so far."""
        with self.lock:
            return sum(len(self.reports_for.get(m["to"], self.reports)) for m in self.accepted)

    def answers(self) -> Counter[int | None]:
        with self.lock:
            return Counter(r.answer for r in self.reported)

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
                    "message": answer.message or f"scripted error {answer.code or answer.status}",
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
            self._schedule_reports(message, form.get("StatusCallback"))
        self._reply(handler, 201, message)

    # ---------------------------------------------------------------- status callbacks

    def _schedule_reports(self, message: dict[str, Any], callback: str | None) -> None:
        """Under the lock: queue this message's status callbacks."""
        if not callback or self.callbacks_to is None:
            return
        accepted_at = time.monotonic()
        for report in self.reports_for.get(message["to"], self.reports):
            params = {
                "AccountSid": ACCOUNT_SID,
                "ApiVersion": "2010-04-01",
                "From": message["from"] or "",
                "To": message["to"],
                "MessageSid": message["sid"],
                "SmsSid": message["sid"],
                "MessageStatus": report.status,
                "SmsStatus": report.status,
            }
            if report.error_code is not None:
                params["ErrorCode"] = str(report.error_code)
            entry = (accepted_at + report.after, next(self._order), params, callback)
            heapq.heappush(self._due, entry)
        self._due_changed.notify()

    def _post_when_due(self) -> None:
        with self.lock:
            while not self._closing:
                if not self._due:
                    self._due_changed.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._due_changed.wait(wait)
                    continue
                _, _, params, callback = heapq.heappop(self._due)
                self._posters.submit(self._post_report, params, callback)

    def _post_report(self, params: dict[str, str], callback: str) -> None:
        assert self.callbacks_to is not None
        parts = urlsplit(callback)
        target = (
            self.callbacks_to.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        )
        signature = RequestValidator(AUTH_TOKEN).compute_signature(callback, params)
        try:
            answer: int | None = self._http.post(
                target, data=params, headers={"X-Twilio-Signature": signature}
            ).status_code
        except httpx.HTTPError:
            answer = None
        code = params.get("ErrorCode")
        with self.lock:
            self.reported.append(
                Reported(
                    params["MessageSid"],
                    params["To"],
                    params["MessageStatus"],
                    int(code) if code else None,
                    answer,
                )
            )

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if handler.headers.get("Authorization") == f"Basic {expected}":
            return True
        self._reply(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        return False

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        account = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
        if url.path != f"{account}/Messages.json":
            if not self._authorized(handler):
                return
            self._get_resource(handler, url.path, parse_qs(url.query), account)
            return
        query = parse_qs(url.query)
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

    def _get_resource(
        self, handler: BaseHTTPRequestHandler, path: str, query: dict, account: str
    ) -> None:
        def page(key: str, items: list[dict]) -> dict:
            return {key: items, "next_page_uri": None, "page": 0, "page_size": 50, "uri": path}

        if path == f"{account}.json":
            self._reply(
                handler,
                200,
                {
                    "sid": ACCOUNT_SID,
                    "friendly_name": "Exam office",
                    "status": self.account_status,
                    "type": self.account_type,
                    "uri": path,
                },
            )
        elif path == f"{account}/IncomingPhoneNumbers.json":
            wanted = query.get("PhoneNumber", [None])[0]
            found = [
                {"sid": "PN" + "0" * 32, "phone_number": n, "capabilities": {"sms": True}}
                for n in self.numbers
                if wanted is None or n == wanted
            ]
            self._reply(handler, 200, page("incoming_phone_numbers", found))
        elif path == f"{account}/SMS/ShortCodes.json":
            wanted = query.get("ShortCode", [None])[0]
            found = [
                {"sid": "SC" + "0" * 32, "short_code": c}
                for c in self.short_codes
                if wanted is None or c == wanted
            ]
            self._reply(handler, 200, page("short_codes", found))
        elif path.startswith("/v1/Services/") and path.removeprefix("/v1/Services/") in (
            self.services
        ):
            sid = path.removeprefix("/v1/Services/")
            self._reply(handler, 200, {"sid": sid, "friendly_name": self.services[sid]})
        else:
            self._reply(
                handler,
                404,
                {"code": 20404, "message": f"The requested resource {path} was not found"},
            )


# -------------------------------------------------------------------- test helpers


def phone(n: int) -> str:
    """A distinct valid Norwegian mobile number per candidate."""
    return f"+4741{n:06d}"


def twilio_settings(api_url: str, **overrides: Any):
    from bot.config import Settings

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
