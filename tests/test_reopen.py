"""R6–R8: `/reopen` in its four modes, what the overview shows, and closing a reopening."""

from __future__ import annotations

import pytest
from conftest import SUPPORT, oslo
from dbstate import snapshot
from sqlalchemy import select

from commands.status import candidate_status
from store.models import Candidate, Change, Reopening, Submission
from store.models import Test as ExamTest

CODE = "TDT4100-2026H"


@pytest.fixture
def exam(world):
    """School exam 09:00–13:00 with upload: ordinary end 13:15. 10023 has 30 min extra."""
    world.add_test(CODE, auto_deliver=False)
    world.add_candidates(CODE, ["10023"], extra_minutes=30)
    world.add_candidates(CODE, ["10024"], status="submitted")
    return world


def status_of(world, number: str) -> dict:
    with world.factory() as s:
        test = s.scalars(select(ExamTest).where(ExamTest.code == CODE)).one()
        candidate = s.scalars(
            select(Candidate).where(Candidate.test_id == test.id, Candidate.number == number)
        ).one()
        return candidate_status(candidate, test, world.ctx(s).tz)


def test_r6_until_close_opens_until_the_candidates_own_end_time(exam):
    """R6: until-close follows the candidate's end time, extra time included (13:45)."""
    reply = exam.at("2026-12-01 12:00").run(f"/reopen {CODE} 10023 until-close upload failed")
    assert reply.ok, reply.text
    status = status_of(exam, "10023")
    assert status["new_delivery"] == {
        "mode": "until-close",
        "deadline": "2026-12-01T13:45:00+01:00",
    }
    assert status["deadline"] == "2026-12-01T13:45:00+01:00"
    assert "until 2026-12-01 13:45 CET (30 min after the ordinary end)" in reply.text
    assert "Before: started, not open for new delivery" in reply.text
    assert "Now: started, new delivery until-close" in reply.text


def test_r6_until_close_follows_later_extra_time(exam):
    """R6: until-close is the candidate's end time, so incident time given later moves it."""
    exam.at("2026-12-01 12:00").run(f"/reopen {CODE} 10023 until-close test reason")
    exam.run(f"/incident-time {CODE} 10023 add 10 test reason")
    assert status_of(exam, "10023")["deadline"] == "2026-12-01T13:55:00+01:00"


def test_r6_until_close_is_refused_at_the_very_moment_of_the_ordinary_end(exam):
    """R6: at 13:15 the ordinary end counts as passed: until-close refused, nothing changed."""
    exam.at("2026-12-01 13:15")
    before = snapshot(exam.factory)
    reply = exam.run(f"/reopen {CODE} 10023 until-close test reason")
    assert not reply.ok
    assert "only possible before the ordinary end" in reply.text and "in 30m" in reply.text
    assert snapshot(exam.factory) == before


def test_r6_in_is_allowed_at_the_very_moment_of_the_ordinary_end(exam):
    """R6: `in N` is allowed from the ordinary end on: deadline now + N."""
    reply = exam.at("2026-12-01 13:15").run(f"/reopen {CODE} 10023 in 30m test reason")
    assert reply.ok, reply.text
    assert status_of(exam, "10023")["deadline"] == "2026-12-01T13:45:00+01:00"


def test_r6_in_with_a_duration_typed_with_spaces(exam):
    """R6: `in 1h 30m` is open for 90 minutes, and the reason is what follows."""
    reply = exam.at("2026-12-01 13:30").run(f"/reopen {CODE} 10023 in 1h 30m upload failed")
    assert reply.ok, reply.text
    assert status_of(exam, "10023")["deadline"] == "2026-12-01T15:00:00+01:00"
    assert "(reason: upload failed)" in reply.text


def test_r6_in_is_refused_before_the_ordinary_end(exam):
    """R6: before the ordinary end `in` is refused with what to do instead."""
    reply = exam.at("2026-12-01 13:14").run(f"/reopen {CODE} 10023 in 30 test reason")
    assert not reply.ok
    assert "only possible after the ordinary end" in reply.text and "until-close" in reply.text
    assert status_of(exam, "10023")["new_delivery"] is None


def test_r6_at_a_future_time_today_and_on_a_date(exam):
    """R6: `at HH:MM` is today, `at YYYY-MM-DD HH:MM` any day; both in the office zone."""
    exam.at("2026-12-01 14:00")
    assert exam.run(f"/reopen {CODE} 10023 at 15:30 scanner broke").ok
    assert status_of(exam, "10023")["deadline"] == "2026-12-01T15:30:00+01:00"
    assert exam.run(f"/reopen {CODE} 10023 at 2026-12-02 09:15 extended").ok
    assert status_of(exam, "10023")["new_delivery"] == {
        "mode": "at",
        "deadline": "2026-12-02T09:15:00+01:00",
    }
    with exam.factory() as s:
        reopenings = s.scalars(select(Reopening)).all()
    assert len(reopenings) == 1 and reopenings[0].reason == "extended"


@pytest.mark.parametrize("when", ["13:59", "14:00", "2026-11-30 15:00"])
def test_r6_at_in_the_past_or_now_is_refused(exam, when):
    """R6: `at` must be in the future; nothing changes."""
    exam.at("2026-12-01 14:00")
    before = snapshot(exam.factory)
    reply = exam.run(f"/reopen {CODE} 10023 at {when} test reason")
    assert not reply.ok and "not in the future" in reply.text
    assert snapshot(exam.factory) == before


def test_r6_at_a_time_that_does_not_exist_on_spring_change_day_is_refused(world):
    """R6 + DST: 2027-03-28 02:30 does not exist in Europe/Oslo."""
    world.add_test(CODE, start="2027-03-27 20:00", end="2027-03-28 00:00")
    world.add_candidates(CODE, ["10023"])
    world.at("2027-03-28 01:00")
    for text in ("at 02:30", "at 2027-03-28 02:30"):
        reply = world.run(f"/reopen {CODE} 10023 {text}")
        assert not reply.ok
        assert "does not exist in Europe/Oslo" in reply.text, reply.text
    assert world.run(f"/reopen {CODE} 10023 at 03:00 test reason").ok
    assert status_of(world, "10023")["deadline"] == "2027-03-28T03:00:00+02:00"


def test_r6_at_an_ambiguous_autumn_time_takes_the_first_and_shows_the_offset(world):
    """R6 + DST: 2026-10-25 02:30 happens twice; the first (CEST, +02:00) is taken."""
    world.add_test(CODE, start="2026-10-24 20:00", end="2026-10-25 00:00")
    world.add_candidates(CODE, ["10023"])
    reply = world.at("2026-10-25 01:00").run(f"/reopen {CODE} 10023 at 02:30 test reason")
    assert reply.ok, reply.text
    assert status_of(world, "10023")["deadline"] == "2026-10-25T02:30:00+02:00"
    assert "02:30 CEST" in reply.text


def test_r6_no_limit_asks_for_confirmation_first_and_changes_nothing(exam):
    """R6: no-limit is not recommended: the first call only asks."""
    before = snapshot(exam.factory)
    reply = exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10023 no-limit lost power")
    assert reply.ok and reply.needs_confirmation
    assert "not recommended" in reply.text and "Nothing is changed" in reply.text
    assert reply.confirm.command == f"/reopen {CODE} 10023 no-limit lost power"
    assert snapshot(exam.factory) == before


def test_r6_no_limit_confirmed_has_no_deadline(exam):
    """R6, R7: confirmed no-limit opens with no deadline (null in the status JSON)."""
    reply = exam.at("2026-12-01 14:00").run(
        f"/reopen {CODE} 10023 no-limit test reason", confirmed=True
    )
    assert reply.ok and not reply.needs_confirmation, reply.text
    assert "with no time limit" in reply.text
    status = status_of(exam, "10023")
    assert status["new_delivery"] == {"mode": "no-limit", "deadline": None}
    assert status["deadline"] is None


def test_r6_reopening_again_changes_the_open_reopening(exam):
    """R6: at most one open reopening per candidate; a second /reopen changes it."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10023 in 30 test reason")
    exam.run(f"/reopen {CODE} 10023 in 1h test reason")
    with exam.factory() as s:
        assert len(s.scalars(select(Reopening)).all()) == 1
    assert status_of(exam, "10023")["deadline"] == "2026-12-01T15:00:00+01:00"


def test_r6_reopen_is_recorded(exam):
    """R6, R15: the reopening writes a Change with before and after."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10023 in 20 browser crashed")
    with exam.factory() as s:
        change = s.scalars(select(Change)).one()
    assert (change.actor, change.action, change.reason) == (SUPPORT, "reopen", "browser crashed")
    assert change.at == oslo("2026-12-01 14:00")
    assert change.before["new_delivery"] is None
    assert change.after["new_delivery"] == {"mode": "in", "deadline": "2026-12-01T14:20:00+01:00"}


def test_r7_candidate_and_exam_show_new_delivery_as_minutes_after_ordinary_end(exam):
    """R7: "new delivery: allowed" and the deadline as minutes after the ordinary end."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10023 in 45m test reason")
    card = exam.run(f"/candidate {CODE} 10023")
    assert "New delivery: allowed (in) until 2026-12-01 14:45 CET" in card.text
    assert "90 min (1 h 30 min) after the ordinary end" in card.text
    assert "Deadline: 2026-12-01 14:45 CET" in card.text
    overview = exam.run(f"/exam {CODE}")
    assert "New delivery: 10023 allowed, in" in overview.text
    assert "90 min (1 h 30 min) after the ordinary end" in overview.text
    assert overview.data["reopened"] == {
        "count": 1,
        "first": [{"candidate": "10023", "mode": "in", "deadline": "2026-12-01T14:45:00+01:00"}],
    }


def test_r7_deadline_before_the_ordinary_end_is_shown_as_before(exam):
    """R7: an `at` deadline before the ordinary end reads "before", never "+-"."""
    exam.at("2026-12-01 12:00").run(f"/reopen {CODE} 10024 at 13:05 test reason")
    card = exam.run(f"/candidate {CODE} 10024")
    assert "10 min before the ordinary end" in card.text
    assert "10 min before the ordinary end" in exam.run(f"/exam {CODE}").text


def test_r8_close_current_delivers_and_sets_submitted(exam):
    """R8: close current ends the reopening now and delivers; status submitted."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10023 in 30 test reason")
    reply = exam.at("2026-12-01 14:10").run(f"/reopen {CODE} 10023 close current")
    assert reply.ok, reply.text
    status = status_of(exam, "10023")
    assert status["status"] == "submitted" and status["new_delivery"] is None
    with exam.factory() as s:
        reopening = s.scalars(select(Reopening)).one()
        submission = s.scalars(select(Submission)).one()
    assert reopening.closed_at == oslo("2026-12-01 14:10") and reopening.close_choice == "current"
    assert submission.source == "closed_current" and submission.copy_of_id is None


def test_r8_close_reverted_without_an_earlier_delivery_is_refused(exam):
    """R8: reverted needs a version delivered before the reopening."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10023 in 30 test reason")
    before = snapshot(exam.factory)
    reply = exam.run(f"/reopen {CODE} 10023 close reverted")
    assert not reply.ok and "close current" in reply.text
    assert snapshot(exam.factory) == before


def test_r8_close_reverted_delivers_the_earlier_version(exam, session_factory):
    """R8: reverted delivers the version from before the reopening; status submitted."""
    with session_factory.begin() as s:
        candidate = s.scalars(select(Candidate).where(Candidate.number == "10023")).one()
        earlier = Submission(
            candidate_id=candidate.id, at=oslo("2026-12-01 13:00"), source="candidate", by="app"
        )
        s.add(earlier)
        s.flush()
        earlier_id = earlier.id
        candidate.status = "submitted"
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10023 in 30 test reason")
    reply = exam.run(f"/reopen {CODE} 10023 close reverted")
    assert reply.ok, reply.text
    assert "the answer delivered before" in reply.text
    with exam.factory() as s:
        last = s.scalars(select(Submission).order_by(Submission.id.desc())).first()
        change = s.scalars(select(Change).order_by(Change.id.desc())).first()
    assert (last.source, last.copy_of_id) == ("closed_reverted", earlier_id)
    assert status_of(exam, "10023")["status"] == "submitted"
    assert change.action == "close_reverted"
    assert change.before["new_delivery"]["mode"] == "in" and change.after["new_delivery"] is None


def test_r8_close_reverted_after_a_registry_submitted_status(exam):
    """R8: a candidate the registry shows as submitted had delivered before: reverted works."""
    exam.at("2026-12-01 14:00").run(f"/reopen {CODE} 10024 in 30 test reason")
    reply = exam.run(f"/reopen {CODE} 10024 close reverted")
    assert reply.ok, reply.text


def test_r8_close_without_an_open_reopening_is_refused(exam):
    """R8: nothing to close is said plainly."""
    reply = exam.run(f"/reopen {CODE} 10023 close current")
    assert not reply.ok and "not open for new delivery" in reply.text


def test_r8_close_needs_current_or_reverted(exam):
    """R8: `close` alone is refused with the two choices."""
    reply = exam.run(f"/reopen {CODE} 10023 close")
    assert not reply.ok and "close current" in reply.text and "close reverted" in reply.text


def test_r6_exam_lists_the_first_ten_open_reopenings_and_counts_the_rest(exam):
    """R6: /exam shows every open reopening's count, the first ten by number with their
    deadlines, and says how many more there are (closed ones are not counted)."""
    numbers = [str(20000 + i) for i in range(12)]
    exam.add_candidates(CODE, numbers)
    for number in numbers:
        exam.at("2026-12-01 12:00").run(f"/reopen {CODE} {number} until-close test reason")
    exam.at("2026-12-01 12:10").run(f"/reopen {CODE} {numbers[0]} close current")
    overview = exam.at("2026-12-01 12:20").run(f"/exam {CODE}")
    reopened = overview.data["reopened"]
    assert reopened["count"] == 11
    assert [r["candidate"] for r in reopened["first"]] == numbers[1:11]
    assert "New delivery: …1 more open" in overview.text
    assert f"New delivery: {numbers[0]} allowed" not in overview.text
    # The other lists are untouched by the reopenings listed with them.
    assert overview.data["extra"] == {"count": 1, "first": [["10023", 30]]}
    assert overview.data["incident"] == {"count": 0, "first": []}


def test_r7_candidate_card_shows_only_the_open_reopening(exam):
    """R7: /candidate reads the candidate as a plain row joined to its open reopening; what it
    shows must be what the full candidate says, before, during and after a reopening."""

    def shown() -> dict:
        reply = exam.run(f"/candidate {CODE} 10023")
        assert reply.ok, reply.text
        return {k: v for k, v in reply.data.items() if k in status_of(exam, "10023")}

    exam.at("2026-12-01 14:00")
    assert shown() == status_of(exam, "10023") and shown()["new_delivery"] is None
    assert exam.run(f"/reopen {CODE} 10023 at 15:30 scanner broke").ok
    assert shown() == status_of(exam, "10023")
    assert shown()["deadline"] == "2026-12-01T15:30:00+01:00"
    exam.at("2026-12-01 14:10")
    assert exam.run(f"/reopen {CODE} 10023 close current").ok
    assert shown() == status_of(exam, "10023") and shown()["new_delivery"] is None
    assert exam.run(
        f"/reopen {CODE} 10023 in 20m test reason"
    ).ok  # a second reopening; the first is closed
    assert shown() == status_of(exam, "10023")
    assert shown()["new_delivery"] == {"mode": "in", "deadline": "2026-12-01T14:30:00+01:00"}
    assert "New delivery: allowed (in) until" in exam.run(f"/candidate {CODE} 10023").text
