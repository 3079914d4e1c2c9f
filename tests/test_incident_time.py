"""R4, R5: `/incident-time` for one, a list or all candidates; frozen after the ordinary end."""

from __future__ import annotations

import pytest
from conftest import SUPPORT, oslo
from dbstate import snapshot
from sqlalchemy import select

from commands.incident_time import USAGE
from store.models import Change

CODE = "TDT4100-2026H"


@pytest.fixture
def exam(world):
    """School exam 09:00–13:00 with upload: ordinary end 13:15; it is 10:00 now."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023", "10024", "10025"])
    return world


def minutes(world, number: str) -> int:
    return world.candidate(CODE, number).incident_minutes


def test_r4_add_to_one_candidate_says_before_after_and_new_end_time(exam):
    """R4: add puts minutes on top; the reply shows before → after and the new end time."""
    reply = exam.run(f"/incident-time {CODE} 10023 add 15 network outage in room 3")
    assert reply.ok, reply.text
    assert minutes(exam, "10023") == 15
    assert minutes(exam, "10024") == 0
    assert "0 min → 15 min" in reply.text
    assert "end time 2026-12-01 13:15 CET → 2026-12-01 13:30 CET" in reply.text
    assert "network outage in room 3" in reply.text
    assert exam.run(f"/incident-time {CODE} 10023 add 1h30m test reason").ok
    assert minutes(exam, "10023") == 105


def test_r4_change_is_recorded_with_actor_time_reason_before_and_after(exam, session_factory):
    """R4, R15: every change writes a Change row: who, when, what, why, before and after."""
    exam.run(f"/incident-time {CODE} 10023 add 15 fire alarm")
    with session_factory() as s:
        change = s.scalars(select(Change)).one()
    assert change.actor == SUPPORT
    assert change.at == exam.now
    assert change.action == "incident_time_add"
    assert change.reason == "fire alarm"
    assert change.before == {"10023": 0}
    assert change.after == {"10023": 15}


def test_r4_list_of_candidates_with_spaces_after_commas(exam):
    """R4: a list of candidates changes each of them once."""
    reply = exam.run(f"/incident-time {CODE} 10023, 10025,10023 add 10 power cut")
    assert reply.ok, reply.text
    assert [minutes(exam, n) for n in ("10023", "10024", "10025")] == [10, 0, 10]


def test_r4_list_with_unknown_candidate_is_refused_whole(exam):
    """R4: one unknown number in a list refuses the whole command; nothing changes."""
    before = snapshot(exam.factory)
    reply = exam.run(f"/incident-time {CODE} 10023,99999 add 10 test reason")
    assert not reply.ok
    assert "99999" in reply.text and "Nothing was changed" in reply.text
    assert snapshot(exam.factory) == before


def test_r4_subtract_to_exactly_zero_is_allowed(exam):
    """R4: subtracting down to exactly zero is allowed."""
    exam.run(f"/incident-time {CODE} 10023 add 20 test reason")
    reply = exam.run(f"/incident-time {CODE} 10023 subtract 20 given by mistake")
    assert reply.ok, reply.text
    assert minutes(exam, "10023") == 0
    assert "20 min → 0 min" in reply.text


def test_r4_subtract_below_zero_is_refused_and_changes_nothing(exam):
    """R4: a total below zero is refused with what the candidate has; nothing changes."""
    exam.run(f"/incident-time {CODE} 10023 add 10 test reason")
    before = snapshot(exam.factory)
    reply = exam.run(f"/incident-time {CODE} 10023 subtract 11 test reason")
    assert not reply.ok
    assert "below zero" in reply.text and "10023 has 10 min" in reply.text
    assert snapshot(exam.factory) == before


def test_r4_subtract_for_a_list_is_refused_whole_when_one_would_fall_below_zero(exam):
    """R4: for a list, one candidate below zero refuses the whole command."""
    exam.run(f"/incident-time {CODE} 10023 add 30 test reason")
    exam.run(f"/incident-time {CODE} 10024 add 5 test reason")
    before = snapshot(exam.factory)
    reply = exam.run(f"/incident-time {CODE} 10023,10024 subtract 10 test reason")
    assert not reply.ok
    assert "10024 has 5 min" in reply.text and "10023" not in reply.text.split("(")[1]
    assert snapshot(exam.factory) == before
    assert (minutes(exam, "10023"), minutes(exam, "10024")) == (30, 5)


def test_r4_set_replaces_the_total(exam):
    """R4: set replaces what was there."""
    exam.run(f"/incident-time {CODE} 10023 add 45 test reason")
    reply = exam.run(f"/incident-time {CODE} 10023,10024 set 20 agreed with the teacher")
    assert reply.ok, reply.text
    assert (minutes(exam, "10023"), minutes(exam, "10024")) == (20, 20)
    assert "45 min → 20 min" in reply.text
    assert exam.run(f"/incident-time {CODE} 10023 set 0 test reason").ok
    assert minutes(exam, "10023") == 0


def test_r4_all_asks_for_confirmation_first_and_changes_nothing(exam):
    """R4, DESIGN: `all` first answers with what would happen and changes nothing."""
    before = snapshot(exam.factory)
    reply = exam.run(f"/incident-time {CODE} all add 10 server down")
    assert reply.ok and reply.needs_confirmation
    assert "all 3 candidates" in reply.text and "Nothing is changed" in reply.text
    assert reply.confirm.command == f"/incident-time {CODE} all add 10 server down"
    assert snapshot(exam.factory) == before


def test_r4_all_confirmed_applies_to_every_candidate_with_one_record(exam, session_factory):
    """R4: the confirmed `all` changes every candidate and records each before/after."""
    exam.run(f"/incident-time {CODE} 10024 add 5 test reason")
    reply = exam.run(f"/incident-time {CODE} all add 10 server down", confirmed=True)
    assert reply.ok and not reply.needs_confirmation, reply.text
    assert [minutes(exam, n) for n in ("10023", "10024", "10025")] == [10, 15, 10]
    assert "all 3 candidates" in reply.text
    with session_factory() as s:
        last = s.scalars(select(Change).order_by(Change.id.desc())).first()
    assert last.before == {"10023": 0, "10024": 5, "10025": 0}
    assert last.after == {"10023": 10, "10024": 15, "10025": 10}
    assert last.reason == "server down"


def test_r4_all_on_a_test_without_candidates_is_refused_clearly(world):
    """R4: `all` on a test with no candidates says so, and how to fix it."""
    world.add_test("EMPTY-2026H")
    reply = world.run("/incident-time EMPTY-2026H all add 10 test reason", confirmed=True)
    assert not reply.ok
    assert "no candidates" in reply.text and "import candidates" in reply.text


def test_r4_help_prints_usage(exam):
    """R4: `help` after the command prints its usage."""
    reply = exam.run("/incident-time help")
    assert reply.ok and reply.kind == "usage"
    assert reply.text == USAGE


def test_r5_refused_at_the_very_moment_of_the_ordinary_end(exam):
    """R5: at the ordinary end (13:15) extra time is frozen; the reply points to /reopen."""
    exam.at("2026-12-01 13:15")
    before = snapshot(exam.factory)
    reply = exam.run(f"/incident-time {CODE} 10023 add 15 test reason")
    assert not reply.ok
    assert "extra time can no longer be changed" in reply.text and f"/reopen {CODE}" in reply.text
    assert snapshot(exam.factory) == before


def test_r5_allowed_a_minute_before_and_refused_after_the_ordinary_end(exam):
    """R5: 13:14 is still in time; 14:00 is not."""
    assert exam.at("2026-12-01 13:14").run(f"/incident-time {CODE} 10023 add 15 test reason").ok
    reply = exam.at("2026-12-01 14:00").run(f"/incident-time {CODE} 10023 set 0 test reason")
    assert not reply.ok and "/reopen" in reply.text
    assert minutes(exam, "10023") == 15


def test_r5_frozen_even_for_a_candidate_with_a_later_individual_end(world):
    """R5: it is the test's ordinary end that counts, not the candidate's own end."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023"], postponed_deadline=world.now.replace(year=2027))
    reply = world.at("2026-12-01 13:30").run(f"/incident-time {CODE} 10023 add 5 test reason")
    assert not reply.ok and "extra time can no longer be changed" in reply.text


def test_r4_incident_time_across_autumn_change_shows_the_offset(world):
    """R4 + DST: 01:30 CEST + 60 min lands on the first 02:30 (CEST), + 120 on the second."""
    world.add_test(CODE, start="2026-10-24 21:15", end="2026-10-25 01:15")
    world.add_candidates(CODE, ["10023", "10024"])
    world.at("2026-10-24 22:00")
    world.run(f"/incident-time {CODE} 10023 add 60 test reason")
    world.run(f"/incident-time {CODE} 10024 add 2h test reason")
    first = world.run(f"/candidate {CODE} 10023").data
    second = world.run(f"/candidate {CODE} 10024").data
    assert first["end_time"] == "2026-10-25T02:30:00+02:00"
    assert second["end_time"] == "2026-10-25T02:30:00+01:00"
    reply = world.run(f"/incident-time {CODE} 10024 subtract 30 test reason")
    assert "2026-10-25 02:30 CET → 2026-10-25 02:00 CET" in reply.text


def test_r4_durations_in_every_documented_form(exam):
    """R4: DURATION is minutes or 1h30m, 45m, 2h."""
    for text, total in (("15", 15), ("45m", 60), ("2h", 180), ("1h30m", 270)):
        assert exam.run(f"/incident-time {CODE} 10025 add {text} test reason").ok
        assert minutes(exam, "10025") == total


@pytest.mark.parametrize(
    ("typed", "total"), [("1h 30m", 90), ("1 h 30 min", 90), ("90 min", 90), ("2 h", 120)]
)
def test_r4_a_duration_typed_with_spaces_is_one_duration(exam, typed, total):
    """R4: "add 1h 30m network" is 90 minutes for the network, not 60 minutes for "30m
    network"; nor is "2 h" two minutes."""
    reply = exam.run(f"/incident-time {CODE} 10025 add {typed} network down")
    assert reply.ok, reply.text
    assert minutes(exam, "10025") == total
    assert "(reason: network down)" in reply.text


def test_r2_r4_receipt_end_times_follow_individual_ends(world):
    """R2 + R3 + R4: the receipt's end times use a candidate's own end where it has one
    (even an earlier one), and the change log names the latest end time of all."""
    world.add_test(CODE)  # ordinary end 13:15 (13:00 + 15 min upload, R1)
    world.add_candidates(CODE, ["10023"], individual_deadline=oslo("2026-12-01 12:00"))
    world.add_candidates(CODE, ["10024"], extra_minutes=30)
    world.add_candidates(CODE, ["10025"], postponed_deadline=oslo("2026-12-01 15:00"))
    reply = world.run(f"/incident-time {CODE} all add 10 network", confirmed=True)
    assert reply.ok, reply.text
    assert "• 10023: 0 min → 10 min; end time 2026-12-01 12:00 CET → 2026-12-01 12:10 CET" in (
        reply.text
    )
    assert "• 10024: 0 min → 10 min; end time 2026-12-01 13:45 CET → 2026-12-01 13:55 CET" in (
        reply.text
    )
    assert "latest end time now 2026-12-01 15:10 CET" in reply.log[0]


@pytest.mark.parametrize(
    ("operation", "latest_end"),
    # 10018 (postponed to 15:00) has 6 + 20 incident minutes before the change (R2, R3).
    [("add 10", "15:36"), ("subtract 5", "15:21"), ("set 7", "15:07")],
)
def test_r2_r3_r4_all_gives_the_same_record_and_receipt_as_listing_every_candidate(
    world, session_factory, operation, latest_end
):
    """R4 (with R2, R3 in the receipt): `all` computes each candidate's before/after in the
    database; the change record, receipt lines, count and latest end time are exactly those
    of the same change given as a list of every candidate, over 20 candidates with registry
    extra time, incident time, and postponed and individual ends (earlier and later)."""
    numbers = [str(10000 + i) for i in range(20)]
    for code in ("ALL-1", "LIST-1"):
        world.add_test(code)
        world.add_candidates(code, numbers[:14], extra_minutes=15)
        world.add_candidates(code, numbers[14:17], individual_deadline=oslo("2026-12-01 12:00"))
        world.add_candidates(code, numbers[17:], postponed_deadline=oslo("2026-12-01 15:00"))
        assert world.run(f"/incident-time {code} {','.join(numbers)} add 6 test reason").ok
        assert world.run(f"/incident-time {code} {','.join(numbers[::3])} add 20 test reason").ok
    by_all = world.run(f"/incident-time ALL-1 all {operation} storm", confirmed=True)
    by_list = world.run(f"/incident-time LIST-1 {','.join(numbers)} {operation} storm")
    assert by_all.ok and by_list.ok, (by_all.text, by_list.text)
    with session_factory() as s:
        all_record, list_record = s.scalars(select(Change).order_by(Change.id.desc())).all()[:2]
    assert all_record.before == list_record.before and len(all_record.before) == 20
    assert all_record.after == list_record.after
    assert (all_record.action, all_record.reason) == (list_record.action, list_record.reason)
    assert all_record.actor == SUPPORT and all_record.candidate_id is None
    for key in ("count", "items", "latest_end", "what"):
        assert by_all.data[key] == by_list.data[key], key
    assert by_all.text.splitlines()[1:] == by_list.text.splitlines()[1:]
    assert "…and 5 more." in by_all.text
    latest = [r.log[0].split("latest end time now ")[1] for r in (by_all, by_list)]
    assert latest[0] == latest[1] == f"2026-12-01 {latest_end} CET"
