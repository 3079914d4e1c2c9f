"""`POST /twilio/status`: signed with the auth token against PUBLIC_URL/twilio/status; forged
or unsigned callbacks are refused with 401 and change nothing; repeats and out-of-order
callbacks never move a delivery backwards, and none is lost when it comes before the send's
own record (R13). The hostile cases are in test_hostile_twilio.py."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from conftest import SUPPORT
from fake_twilio import (
    AUTH_TOKEN,
    FakeTwilio,
    Report,
    Reported,
    phone,
    seed_candidates,
    twilio_settings,
    wait_until,
)
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from test_dispatch import FAST, _settled, running_exam
from test_inapp_page import Server
from twilio.request_validator import RequestValidator

from bot import web_twilio
from bot.deps import Deps
from bot.server import wire
from notifications.dispatch import start_dispatcher
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


def test_odd_error_code_is_refused_and_changes_nothing(world, server, sent):
    sid = f"SM{1:032d}"
    response = post(server, callback(sid, "failed", ErrorCode="3\u00b2"))
    assert response.status_code == 400
    delivery = status_of(world, sent["second"])
    assert delivery.status == "sent" and delivery.error_code is None


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
    assert response.status_code == 401
    assert status_of(world, sent["first"]).status == "sent"


def test_tampered_parameters_break_the_signature(world, server, sent):
    params = callback("SM" + "0" * 32, "delivered")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(CALLBACK, params)
    params["MessageStatus"] = "failed"
    response = post(server, params, signature=signature)
    assert response.status_code == 401
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


# ------------------------------------------------ callbacks racing the send's own record


class WebServer(Server):
    """The real web app of `examdesk serve` (`bot.server.wire`) on a loopback socket."""

    def __init__(self, settings, engine, session_factory) -> None:
        self.wiring = wire(settings, engine=engine, session_factory=session_factory)
        super().__init__(self.wiring.deps)
        self.server.config.app = self.wiring.web

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.wiring.deps.close()


# Per phone number (by n % 4): in order, out of order, repeated, a failure repeated. Each
# message has at most one final status, so what its answered callbacks must leave is clear.
def _script(after: float) -> list[list[Report]]:
    return [
        [Report("sent", after), Report("delivered", after + 0.01)],
        [Report("delivered", after), Report("sent", after + 0.02)],
        [Report("sent", after), Report("delivered", after), Report("delivered", after + 0.03)],
        [Report("failed", after, 30003), Report("sent", after), Report("failed", after, 30003)],
    ]


def _expected(reports: list[Reported]) -> tuple[str, str | None]:
    final = [r for r in reports if r.status != "sent" and r.answer is not None and r.answer < 300]
    if not final:
        return "sent", None
    return final[0].status, str(final[0].error_code) if final[0].error_code else None


@pytest.mark.parametrize("after", [0.0, 0.05, 0.1])
def test_r13_no_status_callback_is_lost_however_soon_twilio_calls_back(
    world, engine, after, caplog
):
    """Twilio may call back before the dispatcher has recorded the MessageSid of its send:
    through the real dispatcher, fake Twilio and the real web app, every callback answered
    2xx is in the database at the end (in order, out of order and repeated)."""
    count = 120
    code = running_exam(world)
    seed_candidates(world.factory, code, count)
    assert world.run(f"/notice {code} Task 3b: n = 10.", confirmed=True).ok
    script = _script(after)
    web_settings = twilio_settings("http://127.0.0.1:9", public_url=PUBLIC)
    with (
        WebServer(web_settings, engine, world.factory) as web,
        FakeTwilio(
            callbacks_to=web.url,
            reports_for={phone(n): script[n % 4] for n in range(1, count + 1)},
        ) as fake,
    ):
        stop = start_dispatcher(
            twilio_settings(fake.url, public_url=PUBLIC, sms_per_second=50),
            world.factory,
            # A send that times out is 'unknown' and never resent here: on a loaded machine the
            # fake's answer may take longer than FAST's 2 s.
            tuning=dataclasses.replace(FAST, send_timeout=30),
        )
        try:
            try:
                wait_until(
                    lambda: (
                        len(fake.accepted) == count and len(fake.reported) == fake.callbacks_due()
                    ),
                    timeout=120,
                )
            except AssertionError:
                raise AssertionError(
                    f"accepted {len(fake.accepted)}, reported {len(fake.reported)} of "
                    f"{fake.callbacks_due()}, answers {fake.answers()}"
                ) from None
            wait_until(lambda: _settled(world.factory, ("sent", "delivered", "failed")))
        finally:
            stop()
    assert set(fake.answers()) == {204}, fake.answers()
    by_sid: dict[str, list[Reported]] = {}
    for report in fake.reported:
        by_sid.setdefault(report.sid, []).append(report)
    with world.factory() as s:
        rows = s.execute(select(Delivery.provider_id, Delivery.status, Delivery.error_code)).all()
    found = {sid: (status, error) for sid, status, error in rows}
    assert len(found) == len(by_sid) == count
    lost = [
        (sid, found.get(sid), _expected(reports))
        for sid, reports in by_sid.items()
        if found.get(sid) != _expected(reports)
    ]
    assert not lost, f"{len(lost)} of {count} messages lost callbacks, e.g. {lost[:3]}"
    with world.factory() as s:
        # The send's own record still came: when it was sent, and the claim let go.
        unfinished = s.scalar(
            select(func.count()).where(
                Delivery.sent_at.is_(None) | Delivery.claimed_by.is_not(None)
            )
        )
    assert unfinished == 0
    assert "Traceback" not in caplog.text
