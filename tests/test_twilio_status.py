"""`POST /twilio/status`: signed with the auth token against PUBLIC_URL/twilio/status; forged
or unsigned callbacks are refused with 403 and change nothing; repeats and out-of-order
callbacks never move a delivery backwards (R13)."""

from __future__ import annotations

import httpx
import pytest
from conftest import SUPPORT
from fake_twilio import AUTH_TOKEN, twilio_settings, wait_until
from sqlalchemy import select, update
from starlette.applications import Starlette
from test_inapp_page import Server
from twilio.request_validator import RequestValidator

from bot import web_twilio
from bot.deps import Deps
from store import clock
from store.models import Delivery

PUBLIC = "https://exams.example.org"
CALLBACK = f"{PUBLIC}/twilio/status"


class TwilioServer(Server):
    def __init__(self, deps: Deps) -> None:
        super().__init__(deps)
        self.server.config.app = Starlette(routes=web_twilio.routes(deps))


@pytest.fixture
def progressed() -> list[int]:
    return []


@pytest.fixture
def server(engine, session_factory, progressed):
    deps = Deps(
        settings=twilio_settings("http://127.0.0.1:9", public_url=PUBLIC),
        engine=engine,
        session_factory=session_factory,
    )
    deps.notice_progress = progressed.append
    with TwilioServer(deps) as running:
        yield running
    deps.close()


@pytest.fixture
def sent(world) -> dict[str, int]:
    code = world.add_test()
    world.add_candidates(code, ["10001", "10002"])
    reply = world.run(f"/notice {code} Task 3b: n = 10.", confirmed=True)
    with world.factory.begin() as s:
        ids = s.scalars(select(Delivery.id).order_by(Delivery.id)).all()
        for n, delivery_id in enumerate(ids):
            s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status="sent", provider_id=f"SM{n:032d}", sent_at=clock.now())
            )
    return {"notice_id": reply.data["notice_id"], "first": ids[0], "second": ids[1]}


def post(
    server,
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    url: str = CALLBACK,
    signature: str | None = None,
):
    headers = {}
    sig = (
        signature
        if signature is not None
        else RequestValidator(token).compute_signature(url, params)
    )
    if sig:
        headers["X-Twilio-Signature"] = sig
    return httpx.post(f"{server.url}/twilio/status", data=params, headers=headers)


def status_of(world, delivery_id: int) -> Delivery:
    with world.factory() as s:
        return s.get(Delivery, delivery_id)


def callback(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32} | extra


def test_r13_signed_delivered_callback_updates_the_delivery(world, server, sent, progressed):
    response = post(server, callback("SM" + "0" * 32, "delivered"))
    assert response.status_code in (200, 204)
    assert status_of(world, sent["first"]).status == "delivered"
    assert status_of(world, sent["second"]).status == "sent"
    wait_until(lambda: progressed == [sent["notice_id"]], timeout=30)


def test_failed_callback_records_the_error_code(world, server, sent):
    sid = f"SM{1:032d}"
    post(server, callback(sid, "undelivered", ErrorCode="30003"))
    delivery = status_of(world, sent["second"])
    assert delivery.status == "undelivered" and delivery.error_code == "30003"
    assert "unreachable" in delivery.error_message


def test_odd_error_code_is_stored_as_given_not_a_crash(world, server, sent):
    sid = f"SM{1:032d}"
    response = post(server, callback(sid, "failed", ErrorCode="3\u00b2"))
    assert response.status_code in (200, 204)
    delivery = status_of(world, sent["second"])
    assert delivery.status == "failed" and delivery.error_code == "3\u00b2"
    assert "not delivered" in delivery.error_message


@pytest.mark.parametrize(
    "forge",
    [
        {"signature": ""},  # missing
        {"signature": "bm90IGEgc2lnbmF0dXJl"},  # made up
        {"token": "someone-elses-token"},  # signed with another account's token
        {"url": "https://evil.example.org/twilio/status"},  # signed for another URL
    ],
)
def test_forged_or_unsigned_callbacks_are_refused(world, server, sent, forge):
    response = post(server, callback("SM" + "0" * 32, "failed", ErrorCode="30005"), **forge)
    assert response.status_code == 403
    assert status_of(world, sent["first"]).status == "sent"


def test_tampered_parameters_break_the_signature(world, server, sent):
    params = callback("SM" + "0" * 32, "delivered")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(CALLBACK, params)
    params["MessageStatus"] = "failed"
    response = post(server, params, signature=signature)
    assert response.status_code == 403
    assert status_of(world, sent["first"]).status == "sent"


def test_repeated_and_out_of_order_callbacks_never_go_backwards(world, server, sent):
    sid = "SM" + "0" * 32
    for status in ("delivered", "sent", "queued", "delivered", "failed", "sending"):
        assert post(server, callback(sid, status)).status_code in (200, 204)
    assert status_of(world, sent["first"]).status == "delivered"


def test_callback_for_an_unknown_message_is_accepted_and_ignored(world, server, sent):
    assert post(server, callback("SM" + "9" * 32, "delivered")).status_code in (200, 204)
    assert {status_of(world, sent[k]).status for k in ("first", "second")} == {"sent"}


def test_exam_overview_reads_right_after_callbacks(world, server, sent):
    post(server, callback("SM" + "0" * 32, "delivered"))
    post(server, callback(f"SM{1:032d}", "failed", ErrorCode="30005"))
    reply = world.run("/exam TDT4100-2026H", actor=SUPPORT)
    assert reply.data["notices"]["deliveries"] == {"sms": {"delivered": 1, "failed": 1}}
    assert "SMS 1 delivered, 1 failed" in reply.text
