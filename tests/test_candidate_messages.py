"""Candidates are told of a change to them (DESIGN.md, issue 17 item 4) and every change
gives a reason (R4, R15; item 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import OSLO, SUPPORT, oslo
from fake_twilio import FakeTwilio, twilio_settings, wait_until
from sqlalchemy import func, select

from commands.confirmations import run_offering
from commands.delivery import attach_file
from commands.runner import execute
from notifications.candidate_messages import COALESCE
from notifications.channels import Outside
from notifications.dispatch import Tuning, start_dispatcher
from notifications.gsm7 import is_gsm7
from store import clock
from store.models import Candidate, Change, Delivery, Reopening

CODE = "TDT4100-2026H"
OUTSIDE = Outside(public_url="https://exams.example.org", support_contact="+47 73 59 66 01")


@pytest.fixture
def exam(world):
    """A school exam 09:00–13:00 (+15 min upload: ordinary end 13:15), at 10:00."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023"], language="nb")
    world.add_candidates(CODE, ["10024"], language="en")
    world.add_candidates(CODE, ["10025"], status="submitted")
    return world


def run(world, line: str, *, confirmed: bool = False):
    return execute(
        session_factory=world.factory,
        actor=SUPPORT,
        command_line=line,
        tz=OSLO,
        now=world.now,
        confirmed=confirmed,
        outside=OUTSIDE,
    )


def messages(world) -> list[tuple[str, Delivery]]:
    with world.factory() as s:
        return [
            (number, d)
            for d, number in s.execute(
                select(Delivery, Candidate.number)
                .join(Candidate, Candidate.id == Delivery.candidate_id)
                .where(Delivery.notice_id.is_(None))
                .order_by(Delivery.id)
            )
        ]


def token(world, number: str) -> str:
    return world.candidate(CODE, number).notice_token


def test_r4_r13_candidate_told_new_deadline_in_norwegian_by_sms(exam):
    reply = run(exam, f"/incident-time {CODE} 10023 add 15 network outage in room 3")
    assert reply.ok, reply.text
    assert "The candidate is told by message in a minute" in reply.text
    ((number, sms),) = messages(exam)
    assert number == "10023" and sms.channel == "sms" and sms.address == "+4741234567"
    assert sms.status == "pending" and sms.next_attempt_at == exam.now + COALESCE
    assert sms.body == (
        "Eksamen TDT4100-2026H: Du har nå 15 min ekstra tid etter en hendelse. Fristen din er "
        f"kl. 13:30. Se siden din: https://exams.example.org/notices/{token(exam, '10023')} "
        "Spørsmål? Eksamenssupport: +47 73 59 66 01"
    )
    assert is_gsm7(sms.body)


def test_r6_r13_candidate_told_reopening_in_english_with_the_date_when_not_today(exam):
    reply = run(exam.at("2026-12-01 14:00"), f"/reopen {CODE} 10024 at 2026-12-02 09:30 lost wifi")
    assert reply.ok, reply.text
    ((number, sms),) = messages(exam)
    assert number == "10024"
    assert sms.body.startswith(
        "Exam TDT4100-2026H: New delivery is open for you. You may deliver again until "
        "on 2 Dec at 09:30. Your page: https://exams.example.org/notices/"
    )
    assert sms.body.endswith("Questions? Exam support: +47 73 59 66 01")


def test_r4_several_changes_within_a_minute_make_one_message(exam):
    run(exam, f"/incident-time {CODE} 10023,10024 add 10 fire alarm")
    exam.now += timedelta(seconds=30)
    run(exam, f"/incident-time {CODE} 10023 add 5 fire alarm, more")
    found = messages(exam)
    assert [n for n, _ in found] == ["10023", "10024"]
    first = found[0][1]
    assert "15 min ekstra tid" in first.body and "kl. 13:30" in first.body
    assert first.next_attempt_at == oslo("2026-12-01 10:01")
    exam.now += timedelta(minutes=2)
    run(exam, f"/incident-time {CODE} 10023 add 5 later")
    assert [n for n, _ in messages(exam)] == ["10023", "10024", "10023"]


def test_r4_no_message_after_all_and_the_preview_offers_a_notice(exam):
    preview = run(exam, f"/incident-time {CODE} all add 10 storm")
    assert "not told by themselves after `all`" in preview.text
    assert preview.data["notice_command"].startswith(f"/notice {CODE} nb: ")
    assert run(exam, f"/incident-time {CODE} all add 10 storm", confirmed=True).ok
    assert messages(exam) == []


def test_r4_no_message_when_the_reason_ends_with_quiet(exam, session_factory):
    reply = run(exam, f"/incident-time {CODE} 10023 add 10 moved rooms --quiet")
    assert reply.ok and "not told (--quiet)" in reply.text
    assert messages(exam) == []
    with session_factory() as s:
        assert s.scalars(select(Change.reason)).one() == "moved rooms"


def test_r4_never_to_a_submitted_candidate(exam):
    assert run(exam, f"/incident-time {CODE} 10023,10025 add 10 noise").ok
    assert [n for n, _ in messages(exam)] == ["10023"]


def test_r8_r10_delivered_for_the_candidate_is_confirmed(exam, tmp_path):
    exam.at("2026-12-01 14:00")
    assert run(exam, f"/reopen {CODE} 10025 in 30m upload failed").ok
    exam.now += timedelta(seconds=40)
    assert run(exam, f"/reopen {CODE} 10025 close current").ok
    ((number, sms),) = messages(exam)  # the reopening's message, replaced within the minute
    assert number == "10025"
    assert sms.body.startswith("Eksamen TDT4100-2026H: Svaret ditt er levert for deg kl. 14:00.")
    path = tmp_path / "answer.pdf"
    path.write_bytes(b"%PDF")
    exam.now += timedelta(minutes=5)
    with exam.factory.begin() as s:
        text = attach_file(
            exam.ctx(s), test_code=CODE, number="10023", path=path, reason="mailed in"
        )
    assert "The candidate is told" in text
    assert "levert for deg kl. 14:05" in messages(exam)[-1][1].body


def test_r13_long_home_exam_candidates_are_told_by_email(world):
    world.add_test("HOME-1", kind="home", start="2026-12-01 09:00", end="2026-12-02 09:00")
    world.add_candidates("HOME-1", ["7"], language="en", email="cand7@example.org")
    assert run(world, "/incident-time HOME-1 7 add 1h network").ok
    ((_, mail),) = messages(world)
    assert mail.channel == "email" and mail.address == "cand7@example.org"
    assert mail.subject == "Exam HOME-1: a change for you"
    assert "Your deadline is on 2 Dec at 10:00." in mail.body


def test_r13_the_message_is_sent_with_gsm7_and_validity_period(world):
    """The dispatcher sends it once its minute is up, as a notice's SMS (ValidityPeriod)."""
    world.now = clock.now()
    local = world.now.astimezone(OSLO)
    world.add_test(
        CODE,
        start=f"{local - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{local + timedelta(hours=3):%Y-%m-%d %H:%M}",
    )
    world.add_candidates(CODE, ["10023"])
    assert run(world, f"/incident-time {CODE} 10023 add 15 outage").ok
    with world.factory.begin() as s:
        s.execute(Delivery.__table__.update().values(next_attempt_at=clock.now()))
    with FakeTwilio() as fake:
        stop = start_dispatcher(
            twilio_settings(fake.url),
            world.factory,
            tuning=Tuning(poll_seconds=0.05, maintain_seconds=0.2, send_timeout=2),
        )
        try:
            wait_until(lambda: len(fake.accepted) == 1, timeout=30)
        finally:
            stop()
        ((_, _, form),) = fake.requests
    assert form["ValidityPeriod"] == "1800"
    assert form["Body"].startswith("Eksamen TDT4100-2026H: Du har nå 15 min ekstra tid")
    assert is_gsm7(form["Body"])
    assert messages(world)[0][1].status == "sent"


# ---------------------------------------------------------------- a reason on every change


@pytest.mark.parametrize(
    "line",
    [
        f"/incident-time {CODE} 10023 add 15",
        f"/incident-time {CODE} 10023 add 15 --quiet",
        f"/reopen {CODE} 10023 until-close",
        f"/reopen {CODE} 10023 at 12:00",
    ],
)
def test_r4_r15_a_change_without_a_reason_is_refused_with_the_usage(exam, line):
    reply = run(exam, line)
    assert not reply.ok
    assert "Give a reason" in reply.text and "Usage: " in reply.text
    with exam.factory() as s:
        assert s.scalar(select(func.count()).select_from(Change)) == 0
        assert s.scalar(select(func.count()).select_from(Reopening)) == 0
        assert s.scalar(select(func.sum(Candidate.incident_minutes))) == 0
    assert messages(exam) == []


def test_r15_deliver_without_a_reason_is_refused(exam, tmp_path):
    path = tmp_path / "a.pdf"
    path.write_bytes(b"x")
    from commands.errors import InvalidInput

    with exam.factory() as s, pytest.raises(InvalidInput, match="Give a reason"):
        attach_file(exam.ctx(s), test_code=CODE, number="10023", path=path, reason="")


@pytest.mark.parametrize("operation", ["add", "subtract"])
def test_r4_add_or_subtract_0_is_refused(exam, operation):
    reply = run(exam, f"/incident-time {CODE} 10023 {operation} 0 oops")
    assert not reply.ok and f"`{operation} 0` changes nothing" in reply.text
    assert run(exam, f"/incident-time {CODE} 10023 set 0 start again").ok


def test_r4_1h90m_is_refused_write_2h30m(exam):
    reply = run(exam, f"/incident-time {CODE} 10023 add 1h90m outage")
    assert not reply.ok and "write 2h30m" in reply.text
    assert exam.candidate(CODE, "10023").incident_minutes == 0


def test_r6_reopen_at_more_than_14_days_ahead_asks_to_confirm(exam, session_factory):
    line = f"/reopen {CODE} 10023 at 2026-12-20 12:00 typo in the date?"
    reply = run_offering(
        session_factory=session_factory,
        actor=SUPPORT,
        command_line=line,
        tz=OSLO,
        now=exam.now,
        outside=OUTSIDE,
    )
    assert reply.ok and reply.needs_confirmation and "more than 14 days ahead" in reply.text
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Reopening)) == 0
    assert run(exam, f"/reopen {CODE} 10023 at 2026-12-14 12:00 soon enough").ok
    assert run(exam, line, confirmed=True).ok
