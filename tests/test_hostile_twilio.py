"""Hostile input at `POST /twilio/status` over HTTP, against the real web app (issue 15).

Every refused request gets its status code and one short log line (no body, no traceback),
changes nothing in the database, acts on nothing (no notice progress), and leaves the server
healthy. Order of checks: body size (413), signature (401), our account (403), the shape of
each value (400); only then is the callback applied (R13).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from dbstate import snapshot
from fake_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    Fail,
    FakeTwilio,
    phone,
    seed_candidates,
    twilio_settings,
    wait_until,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from test_dispatch import FAST, _settled, running_exam
from test_twilio_status import WebServer
from twilio.request_validator import RequestValidator

from bot.web import twilio_status as web_twilio
from notifications import status_callback
from notifications.dispatch import start_dispatcher
from notifications.masking import scrub
from notifications.progress import progress
from notifications.transports import Message
from store import clock
from store.models import Delivery

PUBLIC = "https://exams.example.org"
CALLBACK = f"{PUBLIC}/twilio/status"
RECORDED_SID = "SM" + "a" * 32  # the first delivery's, recorded by the dispatcher
IN_FLIGHT_SID = "SM" + "b" * 32  # the second's, not recorded yet (the send is in flight)
LIMIT = web_twilio.MAX_BODY_BYTES


class Web:
    def __init__(self, server: WebServer, acted: list[int]) -> None:
        self.server = server
        self.url = server.url
        self.acted = acted
        self.http = httpx.Client(timeout=30)

    def post(
        self,
        body: bytes,
        *,
        signature: str | None = None,
        query: str = "",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": "application/x-www-form-urlencoded"} | (headers or {})
        if signature is not None:
            sent["X-Twilio-Signature"] = signature
        target = f"{self.url}/twilio/status" + (f"?{query}" if query else "")
        return self.http.post(target, content=body, headers=sent)

    def healthy(self) -> bool:
        return self.http.get(f"{self.url}/healthz").status_code == 200


@pytest.fixture
def web(engine, session_factory) -> Iterator[Web]:
    acted: list[int] = []
    settings = twilio_settings("http://127.0.0.1:9", public_url=PUBLIC)
    with WebServer(settings, engine, session_factory) as server:
        server.wiring.deps.notice_progress = acted.append
        client = Web(server, acted)
        yield client
        client.http.close()


@pytest.fixture
def sent(world) -> dict[str, int]:
    """Two SMS deliveries: the first sent and its SID recorded, the second still in flight."""
    code = world.add_test()
    world.add_candidates(code, ["10001", "10002"])
    reply = world.run(f"/notice {code} Task 3b: n = 10.", confirmed=True)
    with world.factory.begin() as s:
        first, second = s.scalars(select(Delivery.id).order_by(Delivery.id)).all()
        s.execute(
            update(Delivery)
            .where(Delivery.id == first)
            .values(status="sent", provider_id=RECORDED_SID, sent_at=clock.now())
        )
        s.execute(update(Delivery).where(Delivery.id == second).values(status="sending"))
    return {"notice_id": reply.data["notice_id"], "first": first, "second": second}


def fields(sid: str = RECORDED_SID, status: str = "delivered", **extra: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "From": "+4759440000",
        "To": phone(1),
    } | extra


def sign(params, *, query: str = "", token: str = AUTH_TOKEN, url: str = CALLBACK) -> str:
    full = url + (f"?{query}" if query else "")
    return RequestValidator(token).compute_signature(full, params)


def form(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()


class Multi(dict[str, list[str]]):
    """Form fields with repeated values, as RequestValidator signs them (through getall)."""

    def getall(self, key: str) -> list[str]:
        return self[key]


def status_of(world, delivery_id: int) -> Delivery:
    with world.factory() as s:
        return s.get(Delivery, delivery_id)


def assert_refused(web: Web, world, caplog, response, status: int, before) -> None:
    """The refusal as issue 15 asks: its status, one short line, nothing changed or done."""
    assert response.status_code == status, response.text
    assert snapshot(world.factory) == before
    assert web.acted == []
    ours = [r for r in caplog.records if r.name == "bot.web.twilio_status"]
    assert len(ours) == 1, [r.getMessage() for r in ours]
    line = ours[0].getMessage()
    assert len(line) < 120 and "\n" not in line and ours[0].exc_info is None, line
    assert "Traceback" not in caplog.text
    assert web.healthy()


# --------------------------------------------------------------- unverified: 401


def _unverified_cases() -> list[tuple[str, bytes, str | None, str]]:
    good = fields(status="failed", ErrorCode="30005")
    tampered = dict(good, ErrorCode="30003")
    for_second = "delivery=2"
    return [
        ("unsigned", form(good), None, ""),
        ("empty signature", form(good), "", ""),
        ("made-up signature", form(good), "bm90IGEgc2lnbmF0dXJl", ""),
        ("another account's token", form(good), sign(good, token="someone-elses-token"), ""),
        ("signed for another URL", form(good), sign(good, url="https://evil.example/x"), ""),
        ("tampered after signing", form(tampered), sign(good), ""),
        ("query changed after signing", form(good), sign(good, query=for_second), "delivery=1"),
        ("query added after signing", form(good), sign(good), "delivery=1"),
        ("non-UTF-8 bytes, unsigned", b"MessageSid=\xff\xfe&MessageStatus=failed", None, ""),
        ("garbage form, unsigned", b"payload=%7Bnot&&==&%", None, ""),
        ("JSON, unsigned", b'["MessageSid", {"a": 1}]', "x", ""),
        ("forged newline for the log", form(dict(good, To="x\nchange log: +15 min")), "x", ""),
    ]


@pytest.mark.parametrize(
    ("body", "signature", "query"),
    [pytest.param(*case[1:], id=case[0]) for case in _unverified_cases()],
)
def test_r13_unverified_callbacks_get_401_and_change_nothing(
    web, world, sent, caplog, body, signature, query
):
    before = snapshot(world.factory)
    response = web.post(body, signature=signature, query=query)
    assert_refused(web, world, caplog, response, 401, before)
    assert "change log" not in caplog.text


# --------------------------------------------------------------- not ours: 403


@pytest.mark.parametrize(
    "account", ["AC" + "f" * 32, "", "AC" + "0" * 31, ACCOUNT_SID.lower() + " "]
)
def test_r13_callback_for_another_account_is_refused_though_signed_with_our_token(
    web, world, sent, caplog, account
):
    params = fields(status="failed", ErrorCode="30005", AccountSid=account)
    before = snapshot(world.factory)
    response = web.post(form(params), signature=sign(params))
    assert_refused(web, world, caplog, response, 403, before)


def test_r13_callback_without_account_sid_is_refused(web, world, sent, caplog):
    params = fields(status="failed")
    del params["AccountSid"]
    before = snapshot(world.factory)
    response = web.post(form(params), signature=sign(params))
    assert_refused(web, world, caplog, response, 403, before)


# --------------------------------------------------------------- signed but malformed: 400


def _malformed_cases() -> list[tuple[str, dict[str, str]]]:
    return [
        ("40-digit ErrorCode", fields(status="failed", ErrorCode="3" * 40)),
        ("ErrorCode with a superscript", fields(status="failed", ErrorCode="3\u00b2")),
        ("ErrorCode with letters", fields(status="failed", ErrorCode="30003; drop")),
        ("unknown status", fields(status="exploded")),
        ("status in capitals", fields(status="DELIVERED")),
        ("status with a newline", fields(status="delivered\nchange log: +15 min")),
        ("short MessageSid", fields(sid="SM123")),
        ("MessageSid of a call", fields(sid="CA" + "a" * 32)),
        ("MessageSid with a path", fields(sid="SM" + "a" * 28 + "/../")),
        ("MessageSid of 40 hex digits", fields(sid="SM" + "a" * 40)),
        ("no MessageSid", {k: v for k, v in fields().items() if "Sid" not in k or k[0] == "A"}),
        ("no status", {k: v for k, v in fields().items() if "Status" not in k}),
    ]


@pytest.mark.parametrize(
    "params", [pytest.param(case[1], id=case[0]) for case in _malformed_cases()]
)
def test_r13_signed_callback_with_values_twilio_never_sends_gets_400(
    web, world, sent, caplog, params
):
    before = snapshot(world.factory)
    response = web.post(form(params), signature=sign(params))
    assert_refused(web, world, caplog, response, 400, before)
    assert "change log" not in caplog.text


def test_r13_signed_but_not_utf8_gets_400(web, world, sent, caplog):
    """Twilio's forms are UTF-8; one that is not is refused even when its signature holds."""
    params = fields(status="failed")
    del params["To"]
    body = form(params) + b"&To=%FF%FE"
    before = snapshot(world.factory)
    response = web.post(body, signature=sign(params | {"To": "\ufffd\ufffd"}))
    assert_refused(web, world, caplog, response, 400, before)


def test_r13_signed_but_repeated_field_gets_400(web, world, sent, caplog):
    params = fields(status="failed")
    body = form(params) + b"&MessageStatus=delivered"
    signed = Multi({k: [v] for k, v in params.items()})
    signed["MessageStatus"] = ["failed", "delivered"]
    before = snapshot(world.factory)
    response = web.post(body, signature=sign(signed))
    assert_refused(web, world, caplog, response, 400, before)


@pytest.mark.parametrize(
    "query",
    [
        "delivery=abc",
        "delivery=0",
        "delivery=1&x=2",
        "x=1",
        # Past PostgreSQL's INTEGER: such an id would fail the batch of callbacks it went with.
        "delivery=2147483648",
        "delivery=99999999999",
    ],
)
def test_r13_signed_callback_url_with_an_odd_query_gets_400(web, world, sent, caplog, query):
    params = fields(status="failed")
    before = snapshot(world.factory)
    response = web.post(form(params), signature=sign(params, query=query), query=query)
    assert_refused(web, world, caplog, response, 400, before)


# --------------------------------------------------------------- size: 413


def test_r13_body_over_64_kib_is_refused_by_its_length_before_it_is_read(web, world, sent, caplog):
    params = fields(status="failed", ErrorCode="30005")
    params["Pad"] = "x" * (LIMIT - len(form(params)))
    body = form(params)
    assert len(body) == LIMIT + len("&Pad=")
    before = snapshot(world.factory)
    response = web.post(body, signature=sign(params))
    assert_refused(web, world, caplog, response, 413, before)
    assert "xxxx" not in caplog.text


def test_r13_streamed_body_without_a_length_is_cut_at_64_kib(web, world, sent, caplog):
    params = fields(status="failed", ErrorCode="30005")
    chunks = [form(params) + b"&Pad="] + [b"x" * 16384] * 64  # 1 MiB, chunked
    before = snapshot(world.factory)
    response = web.http.post(
        f"{web.url}/twilio/status",
        content=iter(chunks),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(params),
        },
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_refused(web, world, caplog, response, 413, before)


def _gone_mid_body(web: Web, path: str) -> None:
    """A client that announces a body, sends part of it and hangs up."""
    host, port = web.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
            "MessageStatus=delivered".encode()
        )


def test_r13_a_sender_gone_before_the_body_is_complete_leaves_one_line(web, world, sent, caplog):
    before = snapshot(world.factory)
    _gone_mid_body(web, "/twilio/status")
    wait_until(lambda: any(r.name == "bot.web.twilio_status" for r in caplog.records), timeout=10)
    ours = [r.getMessage() for r in caplog.records if r.name == "bot.web.twilio_status"]
    assert ours == ["Twilio status callback not read: the sender went away mid-body"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert snapshot(world.factory) == before
    assert web.healthy()


def test_r13_a_callback_just_under_the_limit_is_applied(web, world, sent):
    """The limit refuses what Twilio never sends, not padded but real callbacks."""
    params = fields(status="delivered")
    params["Pad"] = "x" * (LIMIT - len(form(params)) - len("&Pad="))
    assert len(form(params)) == LIMIT
    assert web.post(form(params), signature=sign(params)).status_code == 204
    assert status_of(world, sent["first"]).status == "delivered"


# --------------------------------------------------------------- replays and early callbacks


def test_r13_replayed_callback_is_answered_and_applied_once(web, world, sent, caplog):
    """Twilio may send a callback again; the same signed request three times records it
    once, and a replay of an earlier status never moves the delivery back."""
    query = f"delivery={sent['second']}"
    failed = fields(IN_FLIGHT_SID, "failed", ErrorCode="30003")
    signature = sign(failed, query=query)
    assert web.post(form(failed), signature=signature, query=query).status_code == 204
    once = snapshot(world.factory)
    for _ in range(2):
        assert web.post(form(failed), signature=signature, query=query).status_code == 204
    assert snapshot(world.factory) == once
    sent_again = fields(IN_FLIGHT_SID, "sent")
    response = web.post(form(sent_again), signature=sign(sent_again, query=query), query=query)
    assert response.status_code == 204
    assert snapshot(world.factory) == once
    delivery = status_of(world, sent["second"])
    assert (delivery.status, delivery.error_code) == ("failed", "30003")
    assert "unreachable" in delivery.error_message
    assert "Traceback" not in caplog.text and web.healthy()


def test_r13_callback_before_the_sid_is_recorded_finds_its_delivery(web, world, sent):
    """The callback URL names the delivery: a callback for a send still in flight (no SID
    recorded yet) is applied, and records the SID."""
    query = f"delivery={sent['second']}"
    params = fields(IN_FLIGHT_SID, "delivered")
    assert (
        web.post(form(params), signature=sign(params, query=query), query=query).status_code == 204
    )
    delivery = status_of(world, sent["second"])
    assert (delivery.status, delivery.provider_id) == ("delivered", IN_FLIGHT_SID)
    wait_until(lambda: web.acted == [sent["notice_id"]], timeout=30)


def test_r13_callback_naming_a_delivery_with_another_sid_changes_nothing(web, world, sent):
    """Another message for the same delivery (a resend after an unclear outcome) does not
    speak for the one recorded."""
    query = f"delivery={sent['first']}"
    params = fields(IN_FLIGHT_SID, "failed", ErrorCode="30005")
    before = snapshot(world.factory)
    assert (
        web.post(form(params), signature=sign(params, query=query), query=query).status_code == 204
    )
    assert snapshot(world.factory) == before


def test_r13_database_failure_answers_503_and_the_retry_is_applied(
    web, world, sent, caplog, monkeypatch
):
    """204 only once the callback is committed: a database error answers 503 (Twilio may
    try again), with one line and nothing half-applied."""

    def broken(**_kw):
        raise OperationalError("UPDATE deliveries", {}, Exception("disk I/O error"))

    params = fields(status="failed", ErrorCode="30005")
    before = snapshot(world.factory)
    with monkeypatch.context() as patched:
        patched.setattr(status_callback, "apply", broken)
        response = web.post(form(params), signature=sign(params))
    assert_refused(web, world, caplog, response, 503, before)
    assert web.post(form(params), signature=sign(params)).status_code == 204
    assert status_of(world, sent["first"]).status == "failed"


# --------------------------------------------------------------- numbers in Twilio's texts


def test_twilio_error_text_with_the_number_is_stored_and_shown_masked(world):
    """Error 21266 quotes the number; what is stored, and shown in Slack's progress, has
    only its last two digits."""
    code = running_exam(world)
    seed_candidates(world.factory, code, 2)
    reply = world.run(f"/notice {code} Task 3b: n = 10.", confirmed=True)
    same = f"'To' and 'From' number cannot be the same: {phone(1)}"
    with FakeTwilio() as fake:
        fake.always[phone(1)] = Fail(400, 21266, message=same)
        fake.always[phone(2)] = Fail(503, 20500, message=f"Service unavailable for {phone(2)}")
        stop = start_dispatcher(
            twilio_settings(fake.url),
            world.factory,
            tuning=dataclasses.replace(FAST, max_attempts=1, send_timeout=30),
        )
        try:
            wait_until(lambda: _settled(world.factory, ("failed",)))
        finally:
            stop()
    with world.factory() as s:
        messages = s.scalars(select(Delivery.error_message)).all()
        shown = progress(db_session=s, notice_id=reply.data["notice_id"])
    assert shown is not None and len(shown.problems) == 2
    for message in [*messages, *(p[3] for p in shown.problems)]:
        assert phone(1) not in message and phone(2) not in message
        assert phone(1)[3:] not in message and phone(2)[3:] not in message
        assert "••" in message, message
    assert any("21266" in m and phone(1)[-2:] in m for m in messages)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("same: +4741000001", "same: +••••••••01"),
        ("number 412 34 567 is bad", "number +••••••67 is bad"),
        ("Error 21266, see https://www.twilio.com/docs/errors/21266", None),
    ],
)
def test_mask_numbers_keeps_error_codes_and_masks_numbers(text, masked):
    assert scrub(text) == (masked or text)


def test_looking_up_a_send_logs_no_number(caplog):
    """The SDK logs each request's parameters at INFO; a look-up's carry the number."""
    with FakeTwilio() as fake:
        transport = fake.transport()
        with caplog.at_level(logging.INFO):  # `examdesk serve` logs at INFO
            transport.send(Message(7, "sms", phone(3), "hello"))
            transport.find_sent(Message(7, "sms", phone(3), "hello"), since=clock.now())
    assert phone(3) not in caplog.text and phone(3)[1:] not in caplog.text


# --------------------------------------------------------------- fuzz


FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
names = st.sampled_from(
    ["AccountSid", "MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "ErrorCode", "To", "x"]
)
values = st.one_of(
    st.sampled_from(
        [
            ACCOUNT_SID,
            RECORDED_SID,
            IN_FLIGHT_SID,
            "delivered",
            "failed",
            "sent",
            "queued",
            "30003",
            "3" * 40,
            "",
            "\u00b2",
            "SM" + "A" * 32,
        ]
    ),
    st.text(max_size=40),
)
forms = st.dictionaries(names, values, max_size=8)
queries = st.sampled_from(["", "delivery=1", "delivery=2", "delivery=x", "delivery=1&delivery=2"])
signing = st.sampled_from(["ours", "none", "other", "garbage"])
raw_bodies = st.binary(max_size=600)


@FUZZ
@given(params=forms, raw=st.none() | raw_bodies, query=queries, how=signing)
@example(params=fields(status="failed", ErrorCode="3" * 40), raw=None, query="", how="ours")
@example(params={}, raw=b"\xff\xfe\x00=%", query="", how="none")
def test_r13_fuzz_the_endpoint_never_answers_5xx_nor_logs_a_traceback(
    web, world, sent, caplog, params, raw, query, how
):
    """Any body, signed or not: a 2xx or a 4xx, never a 5xx or a traceback; a refusal
    changes nothing."""
    caplog.clear()
    body = raw if raw is not None else form(params)
    signature = {
        "ours": sign(params, query=query),
        "other": sign(params, query=query, token="not-our-token"),
        "garbage": "bm90IHNpZ25lZA==",
        "none": None,
    }[how]
    before = snapshot(world.factory)
    response = web.post(body, signature=signature, query=query)
    assert response.status_code in (204, 400, 401, 403), response.status_code
    if response.status_code != 204:
        assert snapshot(world.factory) == before
    if how != "ours":
        assert response.status_code == 401
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
