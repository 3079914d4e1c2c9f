"""Teachers are told once when the last answer of their test is in (seed 004; R3, R6, R9)."""

from __future__ import annotations

from datetime import timedelta

from conftest import OSLO, TEACHER, World
from sqlalchemy import select, update

from commands import grading
from commands.context import Ctx
from store.models import Candidate, OutboxMessage

CODE = "TDT4100-2026H"


def _announce(world: World) -> int:
    with world.factory.begin() as s:
        return grading.announce_ready(Ctx(db_session=s, actor="system", tz=OSLO, now=world.now))


def _messages(world: World) -> list[OutboxMessage]:
    with world.factory() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_r3_teachers_are_told_once_when_the_last_answer_is_in_with_who_delivered_late(
    world: World,
):
    # School exam 09:00–13:00 with upload: the ordinary end is 13:15.
    world.add_test(CODE, teachers=(TEACHER, "U0TEACH2"))
    world.add_candidates(CODE, ["101"], status="submitted")
    world.add_candidates(CODE, ["102"], extra_minutes=30)  # writes until 13:45 (R3)
    world.at("2026-12-01 13:30")
    assert _announce(world) == 0, "102 is still writing: nobody is told yet"
    assert _messages(world) == []
    delivered = world.candidate(CODE, "102").id
    with world.factory.begin() as s:
        s.execute(
            update(Candidate)
            .where(Candidate.id == delivered)
            .values(status="submitted", submitted_at=world.now + timedelta(minutes=10))
        )
    world.at("2026-12-01 13:50")
    assert _announce(world) == 2
    first, second = _messages(world)
    assert {first.target, second.target} == {TEACHER, "U0TEACH2"}
    text = first.payload["args"]["text"]
    assert text.startswith(f"All answers of {CODE} are in; grading can start.")
    assert "Delivered after the ordinary end (2026-12-01 13:15 CET): 102 (+25 min)" in text
    assert first.payload["args"]["channel"] == first.target
    # Every later sweep, and a restart, finds them told: once.
    assert _announce(world) == 0
    assert len(_messages(world)) == 2


def test_r6_an_open_reopening_keeps_grading_waiting(world: World):
    world.add_test(CODE)
    world.add_candidates(CODE, ["101"], status="submitted")
    world.add_candidates(CODE, ["102"], status="submitted")
    world.at("2026-12-01 14:00")
    reply = world.run(f"/reopen {CODE} 102 in 30m upload failed --quiet")
    assert reply.ok, reply.text
    assert _announce(world) == 0
    world.at("2026-12-01 14:40")
    reply = world.run(f"/reopen {CODE} 102 close current")
    assert reply.ok, reply.text
    assert _announce(world) == 1
    (message,) = _messages(world)
    assert "102 (+" in message.payload["args"]["text"]


def test_nothing_is_said_before_the_ordinary_end_or_for_a_test_without_teachers(world: World):
    world.add_test(CODE)
    world.add_test("NOTEACH-1", teachers=())
    world.add_candidates(CODE, ["101"], status="submitted")
    world.add_candidates("NOTEACH-1", ["101"], status="submitted")
    world.at("2026-12-01 13:10")  # exam time over, ordinary end (13:15) not yet
    assert _announce(world) == 0
    world.at("2026-12-01 13:20")
    assert _announce(world) == 1
    (message,) = _messages(world)
    assert message.target == TEACHER
    assert (
        "Nobody delivered after the ordinary end (2026-12-01 13:15 CET)."
        in message.payload["args"]["text"]
    )
