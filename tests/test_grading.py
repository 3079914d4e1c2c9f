"""Grading readiness in `/exam TEST`: not before the ordinary end, nor while anyone still
writes or is open for new delivery."""

from __future__ import annotations

import json

import pytest
from conftest import OSLO, oslo

from bot import blocks

CODE = "TDT4100-2026H"


@pytest.fixture
def exam(world):
    """School exam 09:00–13:00 with upload: ordinary end 13:15.
    10001 nothing of its own · 10002 30 min extra time (end 13:45) · 10003 delivered, to be
    reopened with no limit · 10004 extra time but delivered already · 10005 an individual
    deadline the next day, not started."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001"])
    world.add_candidates(CODE, ["10002"], extra_minutes=30)
    world.add_candidates(CODE, ["10003"], status="submitted")
    world.add_candidates(CODE, ["10004"], extra_minutes=30, status="submitted")
    world.add_candidates(
        CODE, ["10005"], status="not_started", individual_deadline=oslo("2026-12-02 13:00")
    )
    return world


def grading_line(reply) -> str:
    assert reply.ok, reply.text
    (line,) = [line for line in reply.text.splitlines() if line.startswith("Grading:")]
    return line


def test_grading_cannot_start_before_the_ordinary_end(exam):
    reply = exam.at("2026-12-01 13:14").run(f"/exam {CODE}")
    assert grading_line(reply) == "Grading: not before the ordinary end (2026-12-01 13:15 CET)"
    assert reply.data["grading"]["can_start"] is False


def test_r2_r3_r6_grading_waits_for_time_left_and_open_new_deliveries(exam):
    """R3: 10002 writes until 13:45; R2: 10005's own end is tomorrow; R6: 10003 is open with
    no limit. 10001's end has passed and 10004 has delivered: they hold nothing up."""
    assert (
        exam.at("2026-12-01 13:20").run(f"/reopen {CODE} 10003 no-limit upload", confirmed=True).ok
    )
    reply = exam.run(f"/exam {CODE}")
    assert grading_line(reply) == "Grading: wait: 3 still writing or open (10002, 10003, 10005)"
    assert reply.data["grading"] == {
        "can_start": False,
        "waiting": {"count": 3, "first": ["10002", "10003", "10005"]},
        "text": "wait: 3 still writing or open (10002, 10003, 10005)",
    }
    # R8: closing the new delivery, and 10002's end passing, leave 10005 alone.
    assert exam.at("2026-12-01 13:46").run(f"/reopen {CODE} 10003 close current").ok
    assert grading_line(exam.run(f"/exam {CODE}")) == (
        "Grading: wait: 1 still writing or open (10005)"
    )
    reply = exam.at("2026-12-02 13:00").run(f"/exam {CODE}")
    assert grading_line(reply).startswith(
        "Grading: can start: nobody is still writing or open for new delivery"
    )
    assert reply.data["grading"]["can_start"] is True
    assert f"`/exam {CODE} report`" in grading_line(reply)


def test_a_long_waiting_list_is_cut(world):
    world.add_test(CODE)
    world.add_candidates(CODE, [str(10100 + i) for i in range(14)], extra_minutes=60)
    line = grading_line(world.at("2026-12-01 13:30").run(f"/exam {CODE}"))
    assert line.startswith("Grading: wait: 14 still writing or open (10100, 10101,")
    assert line.endswith("10109 … and 4 more)")


def test_grading_is_shown_in_slack_blocks(exam):
    reply = exam.at("2026-12-01 13:20").run(f"/exam {CODE}")
    shown = json.dumps(blocks.message(reply, tz=OSLO)["blocks"], ensure_ascii=False)
    assert "*Grading:* wait: 2 still writing or open (10002, 10005)" in shown
