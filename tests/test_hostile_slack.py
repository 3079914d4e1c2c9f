"""Hostile input at Slack's door, `POST /slack/events`, over real HTTP against the app that
`examdesk serve` runs (the fake Slack of tests/fake_slack.py behind it).

Every case checks what an attacker or a broken client must never get: a 5xx, a traceback
in the log, a change in the database, a request from the server to anywhere, a server that
stops answering. Unverified requests are refused (401) before anything is decoded; signed
but malformed ones (400) and oversized ones (413) leave one short line of our own in the
log; a replay or a retry is answered without being applied again; a signed but broken
click or form gets a plain refusal (R15 for who may cancel).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import httpx
import pytest
from conftest import OSLO, STRANGER, SUPPORT, TEACHER, World
from dbstate import snapshot
from fake_slack import FakeSlack
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from notifier import FAST
from served import serving, slack_settings
from slack_signing import SECRET, TEAM, block_action, event_callback, signature, slash_command
from sqlalchemy import Engine, func, select
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.orm import Session

from bot.runtime.server import Wiring
from bot.slack import door as slack_door
from bot.slack.listeners.question_errors import not_a_report
from bot.slack.middleware import NO_BUTTON, NO_USER
from bot.slack.outbox_views import RENDERERS
from bot.web.app import ALREADY_HANDLED
from notifications import outbox
from notifications.dispatch import start_dispatcher
from store import clock
from store.db import make_engine, make_session_factory
from store.models import Candidate, Change, Confirmation, SeenSlackRequest

CODE = "TDT4100-2026H"
CHANNEL = "C0SUPPORT"
SUPPORT_2 = "U0SUPPORT2"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SEEN = SeenSlackRequest.__tablename__
# What a forged body tries to write into the log as a line of its own.
FAKE_LINE = "\n2026-12-01 10:00:00 INFO bot.slack.listeners.commands: change log: FORGED-LINE"
RESPONSE_URL = "RESPONSE_URL_OF_THE_FAKE"


@dataclass
class Door:
    url: str
    http: httpx.Client
    fake: FakeSlack
    wiring: Wiring
    engine: Engine

    def post(self, body: str | bytes, headers: dict[str, str]) -> httpx.Response:
        return self.http.post("/slack/events", content=body, headers=headers)

    def signed(
        self,
        body: str | bytes,
        *,
        content_type: str | None = FORM,
        timestamp: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        return self.post(
            body, sign(body, content_type=content_type, timestamp=timestamp) | (extra or {})
        )


def sign(
    body: str | bytes, *, content_type: str | None = FORM, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)  # Slack signs real time
    headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature(SECRET, ts, body)}
    return headers | ({"Content-Type": content_type} if content_type else {})


def _door(engine: Engine, session_factory, fake: FakeSlack) -> tuple[Door, Callable[[], None]]:
    settings = slack_settings(fake, slack_support_channel=CHANNEL)
    stack = ExitStack()
    wiring, url = stack.enter_context(
        serving(settings, engine=engine, session_factory=session_factory)
    )
    http = stack.enter_context(httpx.Client(base_url=url, timeout=30))
    stack.callback(start_dispatcher(settings, session_factory, tuning=FAST, renderers=RENDERERS))
    return Door(url=url, http=http, fake=fake, wiring=wiring, engine=engine), stack.close


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def door(engine: Engine, fake: FakeSlack) -> Iterator[Door]:
    """One server for the whole module (starting one takes a second); every test starts
    with no calls recorded."""
    served, close = _door(engine, make_session_factory(engine), fake)
    yield served
    close()


@pytest.fixture(autouse=True)
def _no_calls_yet(door: Door, session_factory) -> None:
    # What an earlier test's request still had on its way arrives before this answer.
    last = door.fake.response_url()
    door.signed(block_action("examdesk_confirm", "-", user=SUPPORT, response_url=last))
    _answer(door, last)
    door.fake.clear()


@pytest.fixture
def exam(world: World) -> World:
    """A school exam running now (the server's real clock), candidates 101–103."""
    now = clock.now().astimezone(OSLO).replace(second=0, microsecond=0)
    world.now = now
    world.add_test(
        CODE,
        start=f"{now - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{now + timedelta(hours=3):%Y-%m-%d %H:%M}",
    )
    world.add_candidates(CODE, [101, 102, 103])
    world.add_staff(SUPPORT_2, "support")
    return world


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


# ---------------------------------------------------------------- what every case checks


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    problems = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert problems == [], problems
    assert "Traceback" not in caplog.text


LOOK_UPS = ("conversations.history", "conversations.replies", "users.info")


def no_outbound(door: Door, *, besides: tuple[str, ...] = ()) -> None:
    """No request from the server but to ``besides`` (response_urls or Web API methods):
    a signed click on an unknown button answers one last response_url, and once that answer
    is in and the outbox has sent everything, any call made for an earlier request is in
    too."""
    last = door.fake.response_url()
    body = block_action("examdesk_confirm", "no-such-token", user=SUPPORT, response_url=last)
    assert door.signed(body).status_code == 200
    _answer(door, last)
    outbox_sent(door.engine)
    expected = [_where(door, target) for target in (*besides, last)]
    # A look-up of what was posted changes nothing in Slack: the notifier makes one when a
    # post of its own looks cut off (a slow heartbeat under load) rather than post twice.
    # Nor does users.info, the sender's locale (the language of the reply).
    made = [c.path for c in door.fake.calls if c.method not in LOOK_UPS]
    assert sorted(made) == sorted(expected)


def outbox_sent(engine: Engine) -> None:
    """Wait until the outbox holds nothing on its way."""
    deadline = time.monotonic() + 30
    with Session(engine) as db_session:
        while outbox.counts(db_session)["pending"]:
            assert time.monotonic() < deadline, "the outbox did not empty"
            time.sleep(0.05)
            db_session.rollback()


def _where(door: Door, target: str) -> str:
    base = door.fake.base_url
    return target.removeprefix(base) if target.startswith(base) else f"/api/{target}"


def _answer(door: Door, url: str) -> str:
    """The text the server posted to ``url``, once it has."""
    path = url.removeprefix(door.fake.base_url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for call in door.fake.of("response_url"):
            if call.path == path:
                return call.body["text"]
        time.sleep(0.01)
    raise AssertionError(f"nothing was posted to {url}")


def healthy(door: Door) -> None:
    assert door.http.get("/healthz").json()["status"] == "ok"


def one_line_of_ours(caplog: pytest.LogCaptureFixture, status: int) -> None:
    """Exactly one line about the refusal, and nothing the request said in it."""
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.web.app"]
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith(f"Slack request refused ({status}): ") and "\n" not in line
    assert len(line) < 160
    assert "FORGED" not in caplog.text


def unchanged(door: Door, before: dict, *, but_seen: bool = False) -> None:
    after = snapshot(door.engine)
    if but_seen:
        after.pop(SEEN), before.pop(SEEN)
    assert after == before


# ---------------------------------------------------------------- unverified: 401


def _click_payload(response_url: str, **changes: object) -> dict:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": SUPPORT},
        "response_url": response_url,
        "actions": [{"action_id": "examdesk_confirm", "value": "x"}],
    }
    return payload | changes


def _form(payload: dict) -> str:
    return urlencode({"payload": json.dumps(payload)})


def _now() -> int:
    return int(time.time())


Case = Callable[[FakeSlack], tuple[bytes | str, dict[str, str | bytes]]]
EXAM = "command=%2Fexam&text=x"


def _exam(fake: FakeSlack) -> str:
    return slash_command("/exam", CODE, user=SUPPORT, response_url=fake.response_url())


def _headers(body: str, *, timestamp: str, secret: str = SECRET) -> dict[str, str | bytes]:
    return {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(secret, timestamp, body),
    }


def _change(headers: dict[str, str], **changed: str | bytes) -> dict[str, str | bytes]:
    return {**headers, **{name.replace("_", "-"): value for name, value in changed.items()}}


UNSIGNED: dict[str, Case] = {
    # The probe's case: Bolt's timestamp parse raised, and its error handler POSTed there.
    "timestamp abc, response_url": lambda fake: (
        _form(_click_payload(fake.response_url())),
        {"Content-Type": FORM, "X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=0"},
    ),
    "no signature headers": lambda fake: (_form(_click_payload(fake.response_url())), {}),
    "signature only": lambda fake: (
        _exam(fake),
        {"Content-Type": FORM, "X-Slack-Signature": "v0=" + "0" * 64},
    ),
    "forged with another secret": lambda fake: (
        _exam(fake),
        _headers(_exam(fake), timestamp=str(_now()), secret="not-the-secret"),
    ),
    "older than five minutes": lambda fake: (
        _exam(fake),
        _headers(_exam(fake), timestamp=str(_now() - 6 * 60)),
    ),
    "from the future": lambda fake: (
        _exam(fake),
        _headers(_exam(fake), timestamp=str(_now() + 6 * 60)),
    ),
    "timestamp with underscores": lambda fake: (EXAM, _headers(EXAM, timestamp=f"{_now():_}")),
    "timestamp in other digits": lambda fake: (
        EXAM,
        _change(sign(EXAM), X_Slack_Request_Timestamp="١٧٠٠٠٠٠٠٠٠".encode()),
    ),
    "body changed after signing": lambda fake: (
        slash_command("/incident-time", f"{CODE} 101 add 60 x", user=SUPPORT, response_url="x"),
        sign(
            slash_command("/incident-time", f"{CODE} 101 add 5 x", user=SUPPORT, response_url="x")
        ),
    ),
    "signature in capitals": lambda fake: (
        EXAM,
        _change(sign(EXAM), X_Slack_Signature=sign(EXAM)["X-Slack-Signature"].upper()),
    ),
    "signature not ASCII": lambda fake: (
        EXAM,
        _change(sign(EXAM), X_Slack_Signature=b"v0=\xe9\xff"),
    ),
    "not UTF-8, unsigned": lambda fake: (b"\xff\xfe\x00payload=\x80", {"Content-Type": FORM}),
    "broken payload, unsigned": lambda fake: ("payload=%7Bnot", {"Content-Type": FORM}),
    "JSON array, unsigned": lambda fake: ("[1, 2, 3]", {"Content-Type": JSON}),
    "newline in a forged body": lambda fake: (
        "command=/exam&text=" + FAKE_LINE,
        {"Content-Type": FORM, "X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "FORGED"},
    ),
}


@pytest.mark.parametrize("case", list(UNSIGNED))
def test_r15_unverified_requests_are_refused_before_anything_is_read(door, exam, log, case):
    body, headers = UNSIGNED[case](door.fake)
    before = snapshot(door.engine)
    response = door.post(body, headers)
    assert response.status_code == 401
    assert response.json()["ok"] is False
    one_line_of_ours(log, 401)
    no_traceback(log)
    unchanged(door, before)
    no_outbound(door)
    healthy(door)


def test_error_handler_never_answers_a_request_that_failed_before_our_checks(
    door, log, monkeypatch
):
    """Bolt alone (the door bypassed): an unsigned click whose timestamp cannot be read
    makes Bolt's own check raise; the error handler must not POST to its response_url."""
    from slack_bolt import BoltRequest

    posted: list[str] = []
    monkeypatch.setattr(door.wiring.deps, "respond", lambda url, **payload: posted.append(url))
    body = _form(_click_payload(door.fake.response_url()))
    request = BoltRequest(
        body=body,
        headers={
            "content-type": FORM,
            "x-slack-request-timestamp": "abc",
            "x-slack-signature": "x",
        },
    )
    assert door.wiring.bolt_app is not None
    response = door.wiring.bolt_app.dispatch(request)
    assert response.status == 200
    assert posted == []
    assert any("unexpected error" in r.getMessage() for r in log.records)


# ---------------------------------------------------------------- signed, malformed: 400


SIGNED_MALFORMED: dict[str, tuple[bytes | str, str | None]] = {
    "not UTF-8": (b"command=/exam&text=\xff\xfe", FORM),
    "broken payload JSON": ("payload=%7Bnot", FORM),
    "payload is an array": ("payload=%5B1%2C2%5D", FORM),
    "JSON array": ("[1, 2, 3]", JSON),
    "JSON string": ('"block_actions"', JSON),
    "nested past any limit": ("[" * 200_000 + "]" * 200_000, JSON),
    "NUL in a text": (json.dumps({"type": "event_callback", "event": {"type": "x\u0000"}}), JSON),
    "unpaired surrogate": ('{"type": "event_callback", "event": {"type": "\\ud800"}}', JSON),
    "no Content-Type": ("command=/exam&text=x", None),
    "text/plain": ("command=/exam&text=x", "text/plain"),
    "form without a command": ("token=x&team_id=T1&text=hello", FORM),
    "form with an event": ("command=/exam&text=x&event=" + FAKE_LINE, FORM),
    "JSON slash command": (json.dumps({"type": "block_actions", "command": "/exam"}), JSON),
    "unknown type": (_form({"type": "workflow_step_edit", "callback_id": "x"}), FORM),
    "no type": (json.dumps({"token": "x", "team_id": TEAM}), JSON),
    "event is a list": (json.dumps({"type": "event_callback", "event": []}), JSON),
    "event is null": (json.dumps({"type": "event_callback", "event": None}), JSON),
    "event id with a newline": (
        json.dumps({"type": "event_callback", "event": {"type": "x"}, "event_id": FAKE_LINE}),
        JSON,
    ),
    "user is a number": (_form(_click_payload("http://x", user=5)), FORM),
    "user id is a list": (_form(_click_payload("http://x", user={"id": ["U1"]})), FORM),
    "actions is text": (_form(_click_payload("http://x", actions="examdesk_confirm")), FORM),
    "actions hold text": (_form(_click_payload("http://x", actions=["examdesk_confirm"])), FORM),
    "authorizations is text": (_form(_click_payload("http://x", authorizations="abc")), FORM),
    "response_url is a number": (_form(_click_payload("http://x") | {"response_url": 5}), FORM),
    "view without type": (
        _form({"type": "view_submission", "user": {"id": SUPPORT}, "view": {"callback_id": "x"}}),
        FORM,
    ),
    "view is text": (
        _form({"type": "view_submission", "user": {"id": SUPPORT}, "view": "qe_edit_modal"}),
        FORM,
    ),
    "form state is not blocks": (
        _form(
            {
                "type": "view_submission",
                "user": {"id": SUPPORT},
                "view": {"type": "modal", "callback_id": "qe_edit_modal", "state": {"values": []}},
            }
        ),
        FORM,
    ),
    "form value is a number": (
        _form(
            {
                "type": "view_submission",
                "user": {"id": SUPPORT},
                "view": {
                    "type": "modal",
                    "callback_id": "qe_report_modal",
                    "state": {"values": {"test": {"value": {"value": 7}}}},
                },
            }
        ),
        FORM,
    ),
    "newline in a signed body": ("payload=" + FAKE_LINE, FORM),
    # Found by the fuzz below: Bolt takes len() of response_urls.
    "response_urls null": (
        "payload="
        + quote(
            json.dumps(
                {
                    "type": "view_submission",
                    "team": {"id": "T1"},
                    "user": {"id": "U1"},
                    "view": {"type": "modal", "callback_id": "qe_report_modal"},
                    "response_urls": None,
                }
            ),
            safe="",
        ),
        FORM,
    ),
}


@pytest.mark.parametrize("case", list(SIGNED_MALFORMED))
def test_signed_but_malformed_requests_get_400_and_one_line(door, exam, log, case):
    body, content_type = SIGNED_MALFORMED[case]
    before = snapshot(door.engine)
    response = door.signed(body, content_type=content_type)
    assert response.status_code == 400, response.text
    one_line_of_ours(log, 400)
    no_traceback(log)
    unchanged(door, before)
    no_outbound(door)
    healthy(door)


# ---------------------------------------------------------------- oversized: 413


def test_a_body_over_one_mib_is_refused_and_one_of_exactly_one_mib_is_not(door, exam, log):
    fill = slack_door.MAX_BODY - len("command=%2Fexam&text=")
    exactly = "command=%2Fexam&text=" + "x" * fill
    assert door.signed(exactly).status_code == 200
    before = snapshot(door.engine)
    log.clear()
    response = door.signed(exactly + "x")
    assert response.status_code == 413
    one_line_of_ours(log, 413)
    no_traceback(log)
    unchanged(door, before)
    healthy(door)


def test_a_huge_declared_length_is_refused_before_any_of_the_body_is_read(door, log):
    host, port = door.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: "
            + FORM.encode()
            + b"\r\nContent-Length: 314572800\r\n\r\n"
        )
        answer = sock.recv(4096)  # answered at once, though not one byte of the body came
    assert answer.startswith(b"HTTP/1.1 413 ")
    one_line_of_ours(log, 413)
    no_traceback(log)
    healthy(door)


def test_a_body_without_length_is_cut_off_while_it_streams_and_never_buffered(door, log):
    """300 MB sent in chunks with no Content-Length: refused after the first MiB; the
    connection is closed, so the sender stops, and the server never holds the rest."""
    psutil = pytest.importorskip("psutil")
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(300):
            sent += 1
            yield b"x" * (1024 * 1024)

    grew_from = psutil.Process().memory_info().rss
    try:
        response = door.http.post(
            "/slack/events", content=chunks(), headers={"Content-Type": FORM} | sign("")
        )
        assert response.status_code == 413
    except httpx.TransportError:
        pass  # closed while our side was still writing: the 413 was the server's answer
    grew = psutil.Process().memory_info().rss - grew_from
    assert sent < 32, sent
    assert grew < 64 * 1024 * 1024, grew
    one_line_of_ours(log, 413)
    no_traceback(log)
    healthy(door)


# ---------------------------------------------------------------- replays and retries


def _incident(world: World, number: str) -> int:
    return world.candidate(CODE, number).incident_minutes


def _changes(door: Door) -> int:
    with door.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Change))


def test_r4_the_same_signed_command_sent_three_times_applies_once(door, exam, log):
    body = slash_command(
        "/incident-time", f"{CODE} 101 add 5 network", user=SUPPORT, response_url="http://x"
    )
    headers = sign(body)
    first, *again = (door.post(body, headers) for _ in range(3))
    assert first.status_code == 200 and first.json()["text"].startswith("Incident time")
    for response in again:
        assert response.status_code == 200
        assert response.json() == {"response_type": "ephemeral", "text": ALREADY_HANDLED}
    assert _incident(exam, "101") == 5
    assert _changes(door) == 1
    door.fake.wait_for("chat.postMessage")
    no_outbound(door, besides=("chat.postMessage",))  # one change log, no second one
    assert sum("already handled" in r.getMessage() for r in log.records) == 2
    no_traceback(log)


def test_r4_the_same_signed_command_sent_at_once_applies_once(door, exam):
    body = slash_command(
        "/incident-time", f"{CODE} 102 add 5 network", user=SUPPORT, response_url="http://x"
    )
    headers = sign(body)
    barrier = threading.Barrier(4)
    texts: list[str] = []

    def send() -> None:
        with httpx.Client(base_url=door.url, timeout=30) as http:
            barrier.wait()
            texts.append(http.post("/slack/events", content=body, headers=headers).json()["text"])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(t == ALREADY_HANDLED for t in texts) == [False, True, True, True]
    assert _incident(exam, "102") == 5


def test_a_replayed_click_is_acknowledged_without_a_second_answer(door, exam, log):
    confirm_url = door.fake.response_url()
    asked = door.signed(
        slash_command("/incident-time", f"{CODE} all add 10 fire", user=SUPPORT, response_url="x")
    ).json()
    token = next(
        e["value"]
        for b in asked["blocks"]
        for e in b.get("elements", [])
        if e.get("action_id") == "examdesk_confirm"
    )
    body = block_action("examdesk_confirm", token, user=SUPPORT, response_url=confirm_url)
    headers = sign(body)
    assert door.post(body, headers).status_code == 200
    again = door.post(body, headers)
    assert again.status_code == 200 and again.text == ""
    assert [_incident(exam, n) for n in ("101", "102", "103")] == [10, 10, 10]
    _answer(door, confirm_url)
    no_outbound(door, besides=(confirm_url, "chat.postMessage"))
    no_traceback(log)


def test_a_retry_of_an_event_already_handled_is_acknowledged_and_not_handled_again(door, exam, log):
    """Slack re-signs a retry (new timestamp) and says so in X-Slack-Retry-Num; the event
    id is what stays the same."""
    body = event_callback({"type": "app_home_opened", "user": SUPPORT, "tab": "home"})
    assert door.signed(body, content_type=JSON).status_code == 200
    door.fake.wait_for("views.publish")
    retry = door.signed(
        body,
        content_type=JSON,
        timestamp=_now() - 1,
        extra={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    assert retry.status_code == 200 and retry.text == ""
    # Not handed to Bolt at all (the Home view is published from a thread of its own).
    assert any("already handled" in r.getMessage() for r in log.records)
    no_outbound(door, besides=("views.publish",))
    no_traceback(log)


def test_a_replay_is_recognised_by_another_process_sharing_the_database(
    door, exam, database_url, fake
):
    """Two servers with engines of their own, as two `examdesk serve` on one database: the
    second one learns from the database, not from memory, that the request was handled."""
    other_engine = make_engine(database_url)
    other, close = _door(other_engine, make_session_factory(other_engine), fake)
    try:
        body = slash_command(
            "/incident-time", f"{CODE} 103 add 5 network", user=SUPPORT, response_url="x"
        )
        headers = sign(body)
        assert door.post(body, headers).json()["text"].startswith("Incident time")
        assert other.post(body, headers).json()["text"] == ALREADY_HANDLED
        assert _incident(exam, "103") == 5
    finally:
        close()
        other_engine.dispose()


def test_seen_requests_are_kept_only_while_a_replay_could_still_pass(
    engine, session_factory, monkeypatch
):
    now = datetime.now(UTC)
    signed_at = now - slack_door.KEEP - timedelta(seconds=1)
    assert slack_door.first_time(engine, ["v0=old"], signed_at=signed_at, now=signed_at)
    assert not slack_door.first_time(engine, ["v0=old"], signed_at=signed_at, now=signed_at)
    monkeypatch.setattr(slack_door, "_pruned_at", -math.inf)  # as if a minute had passed
    assert slack_door.first_time(engine, ["v0=new"], signed_at=now, now=now)
    with engine.connect() as conn:
        kept = set(conn.scalars(select(SeenSlackRequest.key)))
    assert "v0=new" in kept and "v0=old" not in kept


# ---------------------------------------------------------------- signed, broken: a refusal


def _ask_all(door: Door) -> str:
    asked = door.signed(
        slash_command("/incident-time", f"{CODE} all add 10 fire", user=SUPPORT, response_url="x")
    ).json()
    return next(
        e["value"]
        for b in asked["blocks"]
        for e in b.get("elements", [])
        if e.get("action_id") == "examdesk_confirm"
    )


def _pending(door: Door, token: str) -> bool:
    with door.engine.connect() as conn:
        return conn.scalar(select(Confirmation.used_at).where(Confirmation.token == token)) is None


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"actions": []}, NO_BUTTON),
        ({"actions": [{"action_id": "examdesk_confirm"}]}, NO_BUTTON),
        ({"actions": [{"value": "{token}"}]}, NO_BUTTON),
        ({"user": None}, NO_USER),
        ({"user": {"id": "U1 FORGED"}}, NO_USER),
        ({"user": {"name": "someone"}}, NO_USER),
        # Of a type Slack never sends: not a Slack payload at all.
        ({"actions": [{"action_id": "examdesk_cancel", "value": 1}]}, None),
        ({"actions": "{token}"}, None),
    ],
)
def test_a_broken_signed_click_gets_a_refusal_and_changes_nothing(door, exam, log, change, refusal):
    token = _ask_all(door)
    url = door.fake.response_url()
    click = _click_payload(url, actions=[{"action_id": "examdesk_confirm", "value": token}])
    change = json.loads(json.dumps(change).replace("{token}", token))
    before = snapshot(door.engine)
    response = door.signed(_form(click | change))
    if refusal is None:
        assert response.status_code == 400
        no_outbound(door)
    else:
        assert response.status_code == 200 and response.text == ""
        assert _answer(door, url) == refusal
        no_outbound(door, besides=(url,))
    unchanged(door, before, but_seen=True)
    assert _pending(door, token)
    no_traceback(log)
    healthy(door)


def test_a_signed_command_without_a_user_is_refused_in_its_answer(door, exam, log):
    body = urlencode({"command": "/incident-time", "text": f"{CODE} 101 add 5 x", "team_id": TEAM})
    response = door.signed(body)
    assert response.json() == {"response_type": "ephemeral", "text": NO_USER}
    assert _incident(exam, "101") == 0
    no_traceback(log)


def _report(world: World) -> int:
    reply = world.run(f"/question-error {CODE} Task 3: read 10 kg as 10 g", actor=TEACHER)
    assert reply.ok, reply.text
    return reply.data["report_id"]


@pytest.mark.parametrize("value", ["abc", "٣", "99999999999", ""])
@pytest.mark.parametrize("action_id", ["qe_send", "qe_edit", "qe_reject", "qe_incident_time"])
def test_a_report_button_that_names_no_report_is_refused_plainly(door, exam, log, action_id, value):
    _report(exam)
    before = snapshot(door.engine)
    body = block_action(action_id, value, user=SUPPORT, response_url="x", channel=CHANNEL)
    assert door.signed(body).status_code == 200
    (told,) = door.fake.wait_for("chat.postEphemeral")
    assert told.body["text"] == not_a_report() and told.body["user"] == SUPPORT
    unchanged(door, before, but_seen=True)
    no_traceback(log)


@pytest.mark.parametrize("action_id", ["qe_edit", "qe_incident_time", "qe_send", "qe_reject"])
def test_r15_a_report_button_for_a_report_that_is_gone_is_refused(door, exam, log, action_id):
    body = block_action(action_id, "4711", user=SUPPORT, response_url="x", channel=CHANNEL)
    assert door.signed(body).status_code == 200
    (told,) = door.fake.wait_for("chat.postEphemeral")
    assert "There is no error report #4711." in told.body["text"]
    assert door.fake.of("views.open") == []
    no_traceback(log)


@pytest.mark.parametrize("action_id", ["qe_edit", "qe_incident_time"])
def test_r15_no_form_opens_for_someone_who_may_not_use_it(door, exam, log, action_id):
    report_id = _report(exam)
    body = block_action(action_id, str(report_id), user=STRANGER, response_url="x", channel=CHANNEL)
    assert door.signed(body).status_code == 200
    (told,) = door.fake.wait_for("chat.postEphemeral")
    assert "not registered" in told.body["text"]
    assert door.fake.of("views.open") == []
    no_traceback(log)


def _submission(callback_id: str, metadata: object, values: dict[str, str]) -> str:
    view = {
        "id": "V1",
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "state": {
            "values": {
                k: {"value": {"type": "plain_text_input", "value": v}} for k, v in values.items()
            }
        },
    }
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": SUPPORT},
        "view": view,
    }
    return _form(payload)


@pytest.mark.parametrize(
    ("callback_id", "metadata", "values", "field"),
    [
        ("qe_edit_modal", "x", {"text_nb": "ny tekst"}, "text_nb"),
        ("qe_edit_modal", "", {"text_nb": "ny tekst"}, "text_nb"),
        ("qe_edit_modal", "4711", {"text_nb": "ny tekst"}, "text_nb"),
        ("qe_edit_modal", "{report}", {"text_nb": "ny", "minutes": "ten"}, "minutes"),
        ("qe_minutes_modal", "../1", {"minutes": "10"}, "minutes"),
        ("qe_minutes_modal", "4711", {"minutes": "10"}, "minutes"),
        ("qe_minutes_modal", "{report}", {"minutes": "1e3"}, "minutes"),
        ("qe_report_modal", "", {"test": CODE, "text_nb": "x", "minutes": "ten"}, "minutes"),
    ],
)
def test_a_broken_signed_form_is_answered_with_its_error(
    door, exam, log, callback_id, metadata, values, field
):
    report_id = _report(exam)
    before = snapshot(door.engine)
    response = door.signed(_submission(callback_id, metadata.format(report=report_id), values))
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "errors" and list(answer["errors"]) == [field]
    unchanged(door, before, but_seen=True)
    no_traceback(log)


def test_a_home_event_without_a_user_is_acknowledged_and_ignored(door, log):
    body = event_callback({"type": "app_home_opened", "tab": "home"})
    response = door.signed(body, content_type=JSON)
    assert response.status_code == 200
    no_outbound(door)
    no_traceback(log)


# ---------------------------------------------------------------- cancel: who may (R15)


def test_r15_cancel_by_someone_else_without_a_role_is_refused(door, exam, log):
    token = _ask_all(door)
    url = door.fake.response_url()
    door.signed(block_action("examdesk_cancel", token, user=STRANGER, response_url=url))
    text = _answer(door, url)
    assert text.startswith(f"Only <@{SUPPORT}>, who asked for this, or exam support staff")
    assert _pending(door, token)
    # Still there for the one who asked.
    confirm_url = door.fake.response_url()
    door.signed(block_action("examdesk_confirm", token, user=SUPPORT, response_url=confirm_url))
    assert _answer(door, confirm_url).startswith("Incident time for all 3")
    no_traceback(log)


def test_r15_cancel_by_a_teacher_is_refused_and_by_other_support_staff_allowed(door, exam):
    token = _ask_all(door)
    refused_url, cancel_url = door.fake.response_url(), door.fake.response_url()
    door.signed(block_action("examdesk_cancel", token, user=TEACHER, response_url=refused_url))
    assert "Only <@" in _answer(door, refused_url) and _pending(door, token)
    door.signed(block_action("examdesk_cancel", token, user=SUPPORT_2, response_url=cancel_url))
    assert _answer(door, cancel_url) == "Cancelled. Nothing was changed."
    with door.engine.connect() as conn:
        used_by = conn.scalar(select(Confirmation.used_by).where(Confirmation.token == token))
    assert used_by == f"{SUPPORT_2}:cancelled"
    assert [_incident(exam, n) for n in ("101", "102", "103")] == [0, 0, 0]


# ---------------------------------------------------------------- fuzz


FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Field names Bolt and the listeners read; the fuzz puts any JSON under them.
NAMES = [
    "type",
    "user",
    "user_id",
    "team",
    "team_id",
    "channel",
    "channel_id",
    "enterprise",
    "event",
    "event_id",
    "view",
    "actions",
    "action_id",
    "value",
    "state",
    "values",
    "private_metadata",
    "callback_id",
    "trigger_id",
    "command",
    "text",
    "id",
    "message",
    "authorizations",
    "response_urls",
    "is_ext_shared_channel",
    "container",
    "tab",
    "workflow_step",
    "challenge",
    "ssl_check",
    "thread_ts",
    "function_execution_id",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


# Text that means something to examdesk: ids, names of its buttons and forms, commands.
plausible = st.text(max_size=20) | st.sampled_from(
    [
        "",
        "1",
        "4711",
        SUPPORT,
        TEACHER,
        STRANGER,
        "examdesk_confirm",
        "examdesk_cancel",
        "qe_send",
        "qe_edit",
        "qe_reject",
        "qe_incident_time",
        "qe_edit_modal",
        "qe_minutes_modal",
        "block_actions",
        "view_submission",
        "event_callback",
        "app_home_opened",
        "/incident-time",
        "/question-error",
        "/notice",
        f"{CODE} all add 5 x",
        f"{CODE} 101 add 5 x",
        CODE,
        FAKE_LINE,
    ]
)


def _templates() -> list[tuple[str, dict]]:
    """One real request of each kind examdesk handles (the response_url filled in later)."""
    submission = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": SUPPORT},
        "view": {
            "type": "modal",
            "callback_id": "qe_report_modal",
            "private_metadata": "",
            "state": {"values": {"test": {"value": {"value": CODE}}}},
        },
    }
    event = json.loads(event_callback({"type": "app_home_opened", "user": SUPPORT, "tab": "home"}))
    command = {
        "command": "/candidate",
        "text": f"{CODE} 101",
        "user_id": SUPPORT,
        "team_id": TEAM,
        "trigger_id": "1.2",
        "response_url": RESPONSE_URL,
    }
    return [
        ("payload", _click_payload(RESPONSE_URL)),
        ("payload", submission),
        ("json", event),
        ("form", command),
    ]


TEMPLATES = _templates()


@st.composite
def slack_like(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A real request of each kind, with one field anywhere in it replaced or removed."""
    how, payload = draw(st.sampled_from(TEMPLATES))
    payload = json.loads(json.dumps(payload))  # a copy of its own
    for _ in range(draw(st.integers(0, 3))):
        target, path = payload, []
        while isinstance(target, dict) and target and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(target)))
            if not isinstance(target[key], dict):
                break
            path.append(key)
            target = target[key]
        if not isinstance(target, dict):
            continue
        # The response_url stays the fake's: a server that posts to a made-up URL logs it.
        key = draw(st.sampled_from([k for k in sorted(target) + NAMES if k != "response_url"]))
        value = draw(plausible if how == "form" else plausible | json_values)
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = value
    if how == "form":
        return urlencode(payload).encode(), FORM
    if how == "payload":
        return _form(payload).encode(), FORM
    return json.dumps(payload).encode(), JSON


# Mostly requests like Slack's, else anything at all.
bodies = st.one_of(
    slack_like(),
    slack_like(),
    slack_like(),
    slack_like(),
    st.binary(max_size=300).map(lambda raw: (raw, FORM)),
    st.text(max_size=300).map(lambda text: (text.encode(), FORM)),
    st.text(max_size=300).map(lambda text: (("payload=" + text).encode(), FORM)),
    json_values.map(lambda value: (json.dumps(value).encode(), JSON)),
)


# How a request's headers differ from Slack's: mostly not at all, so that most bodies get
# past the signature to the parser, Bolt and the listeners.
mangled = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.fixed_dictionaries(
        {
            "signed": st.booleans(),
            "content_type": st.sampled_from(
                [None, "keep", "text/plain", "APPLICATION/JSON; charset=utf-8", FORM, JSON]
            ),
            "timestamp": st.sampled_from(
                ["now", "-299", "-301", "+299", "+301", "abc", "", "+1", "1.5e9", None]
            ),
        }
    ),
)


@FUZZ
@given(body=bodies, mangle=mangled, retry=st.booleans())
def test_fuzz_the_slack_door_never_fails_and_never_logs_a_traceback(
    door, log, session_factory, body, mangle, retry
):
    raw, kind = body
    url = door.fake.response_url()
    raw = raw.replace(
        RESPONSE_URL.encode(), (url if kind == JSON else quote(url, safe="")).encode()
    )
    mangle = mangle or {"signed": True, "content_type": "keep", "timestamp": "now"}
    media = kind if mangle["content_type"] == "keep" else mangle["content_type"]
    # Rounded up, not down: int(time.time()) is up to a second behind, so "+301" from it could
    # be less than 300 s ahead by the time the server reads its clock, and inside the window.
    now, stamp = math.ceil(time.time()), mangle["timestamp"]
    shift = {"now": 0, "-299": -299, "-301": -301, "+299": 299, "+301": 301}.get(stamp)
    ts = stamp if shift is None else str(now + shift)
    fresh = shift is not None and abs(shift) < 300
    headers: dict[str, str] = {"X-Slack-Retry-Num": "1"} if retry else {}
    if media is not None:
        headers["Content-Type"] = media
    if ts is not None:
        headers["X-Slack-Request-Timestamp"] = ts
        headers["X-Slack-Signature"] = signature(SECRET if mangle["signed"] else "forged", ts, raw)
    seen = len(log.records)
    response = door.post(raw, headers)
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500, (response.status_code, response.text)
    if not (mangle["signed"] and fresh):
        assert response.status_code == 401
    new = log.records[seen:]
    assert not [r.getMessage() for r in new if r.exc_info or r.levelno >= logging.ERROR]
    assert not [r for r in new if "Traceback" in r.getMessage()]


def test_after_the_fuzz_the_server_still_answers(door, exam):
    """A short burst of the fuzz's worst, then a real command still works."""
    for raw, content_type in SIGNED_MALFORMED.values():
        door.signed(raw, content_type=content_type)
    healthy(door)
    ok = door.signed(slash_command("/candidate", f"{CODE} 101", user=SUPPORT, response_url="x"))
    assert ok.status_code == 200 and "Candidate 101" in json.dumps(ok.json())


def test_a_command_whose_text_says_payload_is_still_a_command(door, exam):
    """Bolt took any form body containing "payload" for interactivity and found nothing in
    it (404); the door parses the form as Slack sends it."""
    body = slash_command(
        "/candidate", f"{CODE} 101 payload", user=SUPPORT, response_url=door.fake.response_url()
    )
    response = door.signed(body)
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"


def test_a_database_error_logs_no_phone_number_or_page_link(door, exam, log):
    # The error is logged with its statement; the values bound to it (the SMS to the
    # candidate: their number, the text with their page's link) are not.
    with exam.factory() as s:
        token = s.scalar(select(Candidate.notice_token).where(Candidate.number == "101"))

    def locked(conn, cursor, statement, params, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO DELIVERIES", "UPDATE DELIVERIES")):
            # The database's own error (sqlite3's, psycopg's), as a lock wait running out.
            raise door.engine.dialect.dbapi.OperationalError("database is locked")

    sqlalchemy_event.listen(door.engine, "before_cursor_execute", locked)
    try:
        body = slash_command(
            "/incident-time", f"{CODE} 101 add 5 network", user=SUPPORT, response_url="http://x"
        )
        answered = door.post(body, sign(body))
    finally:
        sqlalchemy_event.remove(door.engine, "before_cursor_execute", locked)
    assert answered.status_code == 200
    assert exam.candidate(CODE, "101").incident_minutes == 0
    logged = [
        r.getMessage() + ("".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
        for r in log.records
    ]
    assert any("database is locked" in line for line in logged), logged
    assert not [line for line in logged if "+4741234567" in line or token in line]
