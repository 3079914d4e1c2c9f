"""R15: support staff act, teachers see their own tests, everyone else is refused; every change
is recorded with who, when, what, why, before and after."""

from __future__ import annotations

import pytest
from conftest import OSLO, OTHER_TEACHER, STRANGER, SUPPORT, TEACHER, World, oslo
from dbstate import snapshot
from sqlalchemy import select

from commands import staff
from commands.context import Ctx
from commands.delivery import SYSTEM_ACTOR, deliver_due
from store.models import Change

CODE = "TDT4100-2026H"
OTHER = "TMA4100-2026H"


@pytest.fixture
def exam(world):
    world.add_test(CODE, teachers=(TEACHER,))
    world.add_test(OTHER, teachers=(OTHER_TEACHER,))
    world.add_candidates(CODE, ["10023"], phone="+4741234567")
    world.add_candidates(OTHER, ["10023"])
    return world


@pytest.mark.parametrize(
    "command",
    [f"/candidate {CODE} 10023", f"/exam {CODE}"],
)
def test_r15_teacher_sees_own_tests(exam, command):
    """R15: teachers see the status of their own tests' candidates."""
    reply = exam.run(command, actor=TEACHER)
    assert reply.ok, reply.text


def test_r15_teacher_sees_phone_numbers_masked(exam):
    """R15: what a teacher sees in chat has the phone number masked."""
    reply = exam.run(f"/candidate {CODE} 10023", actor=TEACHER)
    assert "41234567" not in reply.text and "67" in reply.data["phone"]


@pytest.mark.parametrize("command", [f"/candidate {OTHER} 10023", f"/exam {OTHER}"])
def test_r15_teacher_is_refused_for_other_tests(exam, command):
    """R15: a teacher of another test is refused, and told why."""
    reply = exam.run(command, actor=TEACHER)
    assert not reply.ok
    assert f"not registered as a teacher of {OTHER}" in reply.text


@pytest.mark.parametrize(
    "command",
    [
        f"/incident-time {CODE} 10023 add 10 test reason",
        f"/incident-time {CODE} all add 10 test reason",
        f"/reopen {CODE} 10023 until-close test reason",
        f"/reopen {CODE} 10023 no-limit test reason",
        f"/reopen {CODE} 10023 close current",
        f"/exam {CODE} refresh",
    ],
)
def test_r15_teachers_only_read(exam, command):
    """R15: a teacher cannot change anything, even their own test; nothing is changed."""
    before = snapshot(exam.factory)
    reply = exam.run(command, actor=TEACHER, confirmed=True)
    assert not reply.ok
    assert "Only exam support staff may" in reply.text
    assert snapshot(exam.factory) == before


@pytest.mark.parametrize(
    "command",
    [
        f"/candidate {CODE} 10023",
        f"/exam {CODE}",
        f"/incident-time {CODE} 10023 add 10 test reason",
    ],
)
def test_r15_strangers_are_refused_and_told_whom_to_ask(exam, command):
    """R15: everyone else is refused, with the support staff to ask."""
    before = snapshot(exam.factory)
    reply = exam.run(command, actor=STRANGER, confirmed=True)
    assert not reply.ok
    assert f"You ({STRANGER}) are not registered" in reply.text
    assert f"<@{SUPPORT}>" in reply.text
    assert snapshot(exam.factory) == before


def test_r15_without_any_support_staff_strangers_are_sent_to_the_exam_office(session_factory):
    """R15: with no support staff yet the refusal says how to get added."""
    world = World(factory=session_factory, now=oslo("2026-12-01 10:00"))
    world.add_test(CODE)
    reply = world.run(f"/exam {CODE}", actor=STRANGER)
    assert not reply.ok and "examdesk staff add" in reply.text


def test_r15_every_kind_of_change_is_recorded(exam, tmp_path):
    """R15: incident time, reopen, close, automatic delivery and staff changes each write a
    Change with actor, time, action, reason, before and after."""
    exam.at("2026-12-01 12:00")
    exam.run(f"/incident-time {CODE} 10023 add 10 outage")
    exam.run(f"/incident-time {CODE} all add 5 server", confirmed=True)
    exam.at("2026-12-01 14:00")
    exam.run(f"/reopen {CODE} 10023 in 30 upload failed")
    exam.run(f"/reopen {CODE} 10023 close current")
    exam.run(f"/reopen {OTHER} 10023 in 10 upload failed")
    exam.at("2026-12-01 14:10")
    with exam.factory() as s:
        deliver_due(Ctx(db_session=s, actor=SYSTEM_ACTOR, tz=OSLO, now=exam.now))
        staff.add(
            Ctx(db_session=s, actor="cli:root", tz=OSLO, now=exam.now),
            user_id="U0NEW1",
            role="support",
            test_codes=[],
        )
        s.commit()
    with exam.factory() as s:
        changes = s.scalars(select(Change).order_by(Change.id)).all()
    assert [(c.action, c.actor) for c in changes] == [
        ("incident_time_add", SUPPORT),
        ("incident_time_add", SUPPORT),
        ("reopen", SUPPORT),
        ("close_current", SUPPORT),
        ("reopen", SUPPORT),
        ("auto_deliver_reopened", SYSTEM_ACTOR),
        ("staff_add", "cli:root"),
    ]
    for change in changes:
        assert change.at is not None and change.at.tzinfo is not None
        assert change.reason
        assert isinstance(change.before, dict) and isinstance(change.after, dict)
        assert change.after != change.before
    assert [c.reason for c in changes[:3]] == ["outage", "server", "upload failed"]


def test_r15_the_change_record_is_append_only(exam):
    """R15: a recorded change cannot be edited afterwards."""
    exam.run(f"/incident-time {CODE} 10023 add 10 outage")
    with exam.factory() as s:
        change = s.scalars(select(Change)).one()
        change.reason = "rewritten history"
        with pytest.raises(RuntimeError, match="append-only"):
            s.flush()
