"""`/notice` and the outbox fan-out (R13, R14, R15)."""

from __future__ import annotations

import pytest
from conftest import OSLO, SUPPORT, TEACHER
from sqlalchemy import func, select

from commands.context import Ctx
from commands.notice import send as send_report
from notifications import fanout
from store.models import Change, Delivery, Notice, NoticeReceipt, QuestionErrorReport

TEXT = "Oppgave 3b: bruk n = 10, ikke n = 100."


def _count(session_factory, model, *where) -> int:
    with session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_r13_notice_asks_first_with_counts_and_unreachable(world):
    code = world.add_test()
    world.add_candidates(code, range(10001, 10006))
    world.add_candidates(code, ["10006"], phone=None)
    world.add_candidates(code, ["10007"], phone="12")

    reply = world.run(f"/notice {code} {TEXT}")

    assert reply.ok and reply.needs_confirmation
    assert reply.data["inapp"] == 7 and reply.data["sms"] == 5 and reply.data["email"] == 0
    assert reply.data["unreachable"] == ["10006", "10007"]
    assert "7 in-app notices, 5 SMS, 0 e-mails" in reply.confirm.prompt
    assert "10006, 10007" in reply.confirm.prompt
    assert reply.confirm.command == f"/notice {code} {TEXT}"
    assert _count(world.factory, Notice) == 0  # a preview changes nothing


def test_r13_confirmed_notice_writes_the_whole_outbox(world):
    code = world.add_test()
    world.add_candidates(code, range(10001, 10006))
    world.add_candidates(code, ["10006"], phone=None)

    reply = world.run(f"/notice {code} {TEXT}", confirmed=True)

    assert reply.ok, reply.text
    notice_id = reply.data["notice_id"]
    assert _count(world.factory, NoticeReceipt, NoticeReceipt.notice_id == notice_id) == 6
    with world.factory() as s:
        rows = s.execute(select(Delivery.channel, Delivery.status, Delivery.address)).all()
        notice = s.get(Notice, notice_id)
        change = s.scalars(select(Change).where(Change.action == "notice_sent")).one()
    assert sorted(r.status for r in rows) == ["failed"] + ["pending"] * 5
    assert {r.channel for r in rows} == {"sms"}
    assert all(r.address == "+4741234567" for r in rows if r.status == "pending")
    assert notice.text_nb == TEXT and notice.created_by == SUPPORT
    assert change.after["notice_id"] == notice_id
    assert "10006" in reply.text and "incident-time" in reply.text


@pytest.mark.parametrize(
    ("kind", "start", "end", "channel"),
    [
        ("school", "2026-12-01 09:00", "2026-12-01 13:00", "sms"),
        ("home", "2026-12-01 09:00", "2026-12-01 15:00", "sms"),
        ("home", "2026-12-01 09:00", "2026-12-01 15:01", "email"),
        ("assignment", "2026-11-20 09:00", "2026-12-04 15:00", "email"),
        ("thesis", "2026-08-20 09:00", "2026-12-15 12:00", "email"),
    ],
)
def test_r13_channel_by_kind_and_length(world, kind, start, end, channel):
    code = world.add_test(kind=kind, start=start, end=end)
    world.add_candidates(code, ["10001"], email="kandidat@example.org")
    reply = world.run(f"/notice {code} {TEXT}", confirmed=True)
    assert reply.ok, reply.text
    with world.factory() as s:
        (row,) = s.execute(select(Delivery.channel, Delivery.address)).all()
    assert row.channel == channel
    assert row.address == ("+4741234567" if channel == "sms" else "kandidat@example.org")


def test_r15_only_support_sends_notices(world):
    code = world.add_test()
    world.add_candidates(code, ["10001"])
    reply = world.run(f"/notice {code} {TEXT}", actor=TEACHER, confirmed=True)
    assert not reply.ok and "support" in reply.text
    assert _count(world.factory, Notice) == 0


@pytest.mark.parametrize("line", ["/notice", "/notice TDT4100-2026H", "/notice NOPE-1 hello"])
def test_bad_notice_input_is_refused_clearly(world, line):
    world.add_test()
    reply = world.run(line, confirmed=True)
    assert not reply.ok
    assert "Traceback" not in reply.text
    assert _count(world.factory, Notice) == 0


def test_notice_help_prints_usage(world):
    reply = world.run("/notice help")
    assert reply.kind == "usage" and "/notice TEST text" in reply.text


def test_fan_out_is_atomic_when_it_fails_half_way(world, monkeypatch):
    """An exception after the notice and some deliveries were inserted leaves no rows."""
    code = world.add_test()
    world.add_candidates(code, range(10001, 10031))
    monkeypatch.setattr(fanout, "CHUNK", 10)
    seen = {"n": 0}
    real = fanout.usable_phone

    def failing(raw):
        seen["n"] += 1
        if seen["n"] > 15:  # after the first chunk of deliveries is inserted
            raise RuntimeError("crash in the middle of the fan-out")
        return real(raw)

    monkeypatch.setattr(fanout, "usable_phone", failing)
    with pytest.raises(RuntimeError):
        world.run(f"/notice {code} {TEXT}", confirmed=True)
    assert seen["n"] > 15
    for model in (Notice, NoticeReceipt, Delivery):
        assert _count(world.factory, model) == 0
    assert _count(world.factory, Change, Change.action == "notice_sent") == 0


def test_r14_report_is_sent_once_even_on_a_double_click(world):
    code = world.add_test()
    world.add_candidates(code, range(10001, 10004))
    reply = world.run(f"/question-error {code} Task 2: the graph is mislabelled", actor=TEACHER)
    report_id = reply.data["report_id"]

    def click():
        with world.factory() as s:
            ctx = Ctx(db_session=s, actor=SUPPORT, tz=OSLO, now=world.now)
            try:
                result = send_report(ctx, report_id=report_id)
            except Exception as error:
                s.rollback()
                return error
            s.commit()
            return result

    first, second = click(), click()
    assert first.data["notice_id"] and first.data["inapp"] == 3
    assert "already sent" in str(second)
    assert _count(world.factory, Notice) == 1
    with world.factory() as s:
        report = s.get(QuestionErrorReport, report_id)
        notice = s.scalars(select(Notice)).one()
    assert report.state == "sent" and report.handled_by == SUPPORT
    # Written in English without `en:`: stored as the English text, shown to everybody.
    assert notice.report_id == report_id and notice.text_en.startswith("Task 2")


def test_exam_overview_counts_notices(world):
    code = world.add_test()
    world.add_candidates(code, range(10001, 10004))
    world.add_candidates(code, ["10004"], phone=None)
    world.run(f"/notice {code} {TEXT}", confirmed=True)
    reply = world.run(f"/exam {code}")
    stats = reply.data["notices"]
    assert stats["sent"] == 1 and stats["inapp"] == 4 and stats["read"] == 0
    assert stats["deliveries"] == {"sms": {"pending": 3, "failed": 1}}
    assert "Notices: 1 sent; in-app 4, read 0; SMS 1 failed, 3 pending" in reply.text
