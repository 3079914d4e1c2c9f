"""R1–R3: how a candidate's end time is made up, including daylight-saving changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import OSLO, STATUS_KEYS, oslo, utc

from commands.status import candidate_status
from commands.timing import end_time, individual_end, ordinary_end, timing, upload_allowance_minutes
from store.models import Candidate
from store.models import Test as ExamTest  # pytest would collect a class named Test…


def make_test(kind: str, start: str, end: str, *, upload: bool = True) -> ExamTest:
    return ExamTest(
        code="T-1",
        kind=kind,
        start=oslo(start),
        end=oslo(end),
        has_upload=upload,
        auto_deliver=True,
    )


def make_candidate(
    *,
    extra: int = 0,
    incident: int = 0,
    postponed: str | None = None,
    individual: str | None = None,
) -> Candidate:
    return Candidate(
        number="10023",
        status="started",
        extra_minutes=extra,
        incident_minutes=incident,
        postponed_deadline=oslo(postponed) if postponed else None,
        individual_deadline=oslo(individual) if individual else None,
        reopenings=[],
    )


@pytest.mark.parametrize(
    ("kind", "start", "end", "upload", "allowance"),
    [
        ("home", "2026-12-01 09:00", "2026-12-01 15:00", True, 30),  # exactly 6 h
        ("home", "2026-12-01 09:00", "2026-12-01 15:01", True, 0),  # 6 h 1 min
        ("home", "2026-12-01 09:00", "2026-12-01 11:00", True, 30),
        ("home", "2026-12-01 09:00", "2026-12-03 09:00", True, 0),  # 48 h
        ("home", "2026-12-01 09:00", "2026-12-01 13:00", False, 0),  # no upload
        ("school", "2026-12-01 09:00", "2026-12-01 13:00", True, 15),
        ("school", "2026-12-01 09:00", "2026-12-01 17:00", True, 15),  # school: length no matter
        ("school", "2026-12-01 09:00", "2026-12-01 13:00", False, 0),
        ("assignment", "2026-12-01 09:00", "2026-12-01 13:00", True, 0),
        ("thesis", "2026-08-01 09:00", "2026-12-01 13:00", True, 0),
    ],
)
def test_r1_upload_allowance(kind, start, end, upload, allowance):
    """R1: 30 min for home exams of at most 6 h with upload, 15 for school with upload."""
    test = make_test(kind, start, end, upload=upload)
    assert upload_allowance_minutes(test) == allowance
    assert ordinary_end(test) == oslo(end) + timedelta(minutes=allowance)


def test_r1_six_hour_home_exam_across_spring_change_counts_real_hours():
    """R1 + DST: 22:00–05:00 on the spring-forward night is 7 h on the clock but 6 h of real
    exam time, so it still gets the 30 minutes; its ordinary end is 05:30 CEST = 03:30 UTC."""
    test = make_test("home", "2027-03-27 22:00", "2027-03-28 05:00")
    assert upload_allowance_minutes(test) == 30
    assert ordinary_end(test) == utc(2027, 3, 28, 3, 30)


def test_r1_home_exam_across_autumn_change_has_the_right_utc_end():
    """R1 + DST: 00:00–05:00 on the fall-back night lasts 6 real hours; end 05:00 CET is
    04:00 UTC, plus 30 min allowance."""
    test = make_test("home", "2026-10-25 00:00", "2026-10-25 05:00")
    assert test.end - test.start == timedelta(hours=6)
    assert ordinary_end(test) == utc(2026, 10, 25, 4, 30)
    assert ordinary_end(test).astimezone(OSLO).isoformat() == "2026-10-25T05:30:00+01:00"


def test_r2_individual_end_replaces_ordinary_end_even_when_earlier():
    """R2: an individual deadline earlier than the ordinary end still replaces it."""
    test = make_test("school", "2026-12-01 09:00", "2026-12-01 13:00")
    candidate = make_candidate(individual="2026-12-01 12:00")
    assert individual_end(candidate) == oslo("2026-12-01 12:00")
    assert end_time(candidate, test) == oslo("2026-12-01 12:00")


@pytest.mark.parametrize(
    ("postponed", "individual", "expected"),
    [
        ("2026-12-08 13:00", "2026-12-05 13:00", "2026-12-08 13:00"),
        ("2026-12-05 13:00", "2026-12-08 13:00", "2026-12-08 13:00"),
        ("2026-12-05 13:00", None, "2026-12-05 13:00"),
        (None, "2026-12-05 13:00", "2026-12-05 13:00"),
    ],
)
def test_r2_later_of_postponed_and_individual_deadline(postponed, individual, expected):
    """R2: the later of postponed and individual deadline is the individual end."""
    test = make_test("home", "2026-12-01 09:00", "2026-12-01 13:00")
    candidate = make_candidate(postponed=postponed, individual=individual)
    assert individual_end(candidate) == oslo(expected)
    assert end_time(candidate, test) == oslo(expected)


def test_r3_end_time_adds_extra_and_incident_time_to_ordinary_end():
    """R3: ordinary end 13:15 + 30 extra + 10 incident = 13:55."""
    test = make_test("school", "2026-12-01 09:00", "2026-12-01 13:00")
    assert end_time(make_candidate(extra=30, incident=10), test) == oslo("2026-12-01 13:55")
    assert end_time(make_candidate(), test) == oslo("2026-12-01 13:15")


def test_r3_end_time_adds_extra_and_incident_time_to_individual_end():
    """R3: extra and incident time go on top of the individual end, not the ordinary end."""
    test = make_test("school", "2026-12-01 09:00", "2026-12-01 13:00")
    candidate = make_candidate(extra=20, incident=5, postponed="2026-12-03 10:00")
    assert end_time(candidate, test) == oslo("2026-12-03 10:25")


def test_r3_extra_time_across_autumn_change_adds_real_minutes():
    """R3 + DST: ordinary end 01:30 CEST on the fall-back night; +60 min real time is 02:30
    CEST (first 02:30), +120 min is 02:30 CET (second 02:30)."""
    test = make_test("school", "2026-10-24 21:15", "2026-10-25 01:15")
    assert ordinary_end(test).astimezone(OSLO).isoformat() == "2026-10-25T01:30:00+02:00"
    one_hour = end_time(make_candidate(extra=60), test)
    two_hours = end_time(make_candidate(extra=30, incident=90), test)
    assert one_hour == utc(2026, 10, 25, 0, 30)
    assert one_hour.astimezone(OSLO).isoformat() == "2026-10-25T02:30:00+02:00"
    assert two_hours == utc(2026, 10, 25, 1, 30)
    assert two_hours.astimezone(OSLO).isoformat() == "2026-10-25T02:30:00+01:00"


def test_r3_extra_time_across_spring_change_adds_real_minutes():
    """R3 + DST: ordinary end 01:45 CET on the spring-forward night; +30 min real time is
    03:15 CEST, because 02:00–03:00 does not exist."""
    test = make_test("school", "2027-03-27 21:30", "2027-03-28 01:30")
    result = end_time(make_candidate(extra=30), test)
    assert result == utc(2027, 3, 28, 1, 15)
    assert result.astimezone(OSLO).isoformat() == "2027-03-28T03:15:00+02:00"


def test_r3_status_json_keys_and_values():
    """R3, DESIGN: the status object has every documented key, times ISO 8601 with offset."""
    test = make_test("home", "2026-12-01 09:00", "2026-12-01 15:00")
    candidate = make_candidate(extra=30, incident=15, individual="2026-12-02 10:00")
    status = candidate_status(candidate, test, OSLO)
    assert set(status) >= STATUS_KEYS
    assert status["ordinary_end"] == "2026-12-01T15:30:00+01:00"
    assert status["individual_end"] == "2026-12-02T10:00:00+01:00"
    assert status["end_time"] == "2026-12-02T10:45:00+01:00"
    assert status["deadline"] == status["end_time"]
    assert status["new_delivery"] is None
    assert (status["extra_minutes"], status["incident_minutes"]) == (30, 15)


def test_r3_timing_without_reopening_has_end_time_as_deadline():
    """R3/R7: with no reopening the deadline is the end time."""
    test = make_test("school", "2026-06-01 09:00", "2026-06-01 13:00")
    t = timing(make_candidate(extra=15), test)
    assert t.reopening is None
    assert t.deadline == t.end_time == oslo("2026-06-01 13:30")
    # Summer time: the offset shown is +02:00.
    assert t.deadline.astimezone(OSLO).utcoffset() == timedelta(hours=2)
