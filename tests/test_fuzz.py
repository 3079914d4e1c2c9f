"""Fuzzing the command parser: any text gets a Reply, never an exception, and a refusal or a
question changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import OSLO, STRANGER, SUPPORT, TEACHER, oslo
from dbstate import snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commands.context import Ctx
from commands.errors import CommandError, InvalidInput
from commands.reply import Reply
from commands.router import dispatch
from commands.timeparse import MAX_DURATION_MINUTES, parse_duration, parse_local_datetime

CODE = "TDT4100-2026H"
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

names = st.sampled_from(
    ["/incident-time", "/reopen", "/candidate", "/exam", "incident-time", "/REOPEN", "/", "/x"]
)
codes = st.sampled_from([CODE, CODE.lower(), "NOPE-1", "", "TDT4100-2026H\u0301", "%", "'--"])
who = st.sampled_from(["10023", "10024", "10023,10024", "10023, 10024", "all", "ALL", "99999"])
verbs = st.sampled_from(
    [
        "add",
        "subtract",
        "set",
        "until-close",
        "at",
        "in",
        "no-limit",
        "close",
        "current",
        "reverted",
        "help",
        "refresh",
        "-h",
    ]
)
amounts = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["1h30m", "45m", "2h", "0", "1h", "h", "m", "30min", "1h-5m", "٣", "²"]),
    st.sampled_from(["2026-12-01", "13:30", "25:00", "02:30", "2027-03-28", "0001-01-01"]),
    st.sampled_from(["9999-12-31", "23:59", "2026-02-30", "2026-10-25", "24:00", "00:00"]),
)
noise = st.text(max_size=20)
words = st.lists(st.one_of(codes, who, verbs, amounts, noise), max_size=6)
structured = st.tuples(names, codes, who, verbs, words).map(
    lambda t: " ".join([t[0], t[1], t[2], t[3], *t[4]])
)
command_lines = st.one_of(structured, st.text(max_size=120), words.map(" ".join))


@pytest.fixture
def exam(world):
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023", "10024"])
    world.add_candidates(CODE, ["10025"], status="submitted")
    return world


@FUZZ
@given(
    line=command_lines,
    actor=st.sampled_from([SUPPORT, TEACHER, STRANGER]),
    confirmed=st.booleans(),
    when=st.sampled_from(["2026-12-01 10:00", "2026-12-01 13:15", "2026-12-01 18:00"]),
)
def test_execute_always_replies_and_a_refusal_changes_nothing(exam, line, actor, confirmed, when):
    before = snapshot(exam.factory)
    reply = exam.at(when).run(line, actor=actor, confirmed=confirmed)
    assert isinstance(reply, Reply)
    assert reply.text.strip()
    if not reply.ok or reply.needs_confirmation:
        assert snapshot(exam.factory) == before


@FUZZ
@given(line=command_lines)
def test_dispatch_returns_a_reply_or_raises_a_command_error_only(exam, line):
    """dispatch's only way to refuse is a CommandError (runner.execute turns it into a Reply)."""
    with exam.factory() as s:
        try:
            reply = dispatch(Ctx(db_session=s, actor=SUPPORT, tz=OSLO, now=exam.now), line)
        except CommandError as error:
            assert error.message.strip()
        else:
            assert isinstance(reply, Reply)
        finally:
            s.rollback()


@settings(max_examples=500, deadline=None, database=None)
@given(text=st.text(max_size=30))
@example("9" * 5000)  # int() refuses more than 4300 digits
@example("²")  # a digit to str.isdigit(), not to int()
def test_parse_duration_returns_sane_minutes_or_refuses(text):
    try:
        minutes = parse_duration(text)
    except InvalidInput as error:
        assert "duration" in error.message or "too long" in error.message
    else:
        assert 0 <= minutes <= MAX_DURATION_MINUTES


@settings(max_examples=300, deadline=None, database=None)
@given(
    hours=st.integers(0, 200),
    mins=st.integers(0, 500),
)
def test_parse_duration_round_trip(hours, mins):
    # An hour's worth of minutes or more after the hours is refused (write 2h30m, not 1h90m).
    if mins >= 60:
        hours, mins = hours + mins // 60, mins % 60
    total = hours * 60 + mins
    if total <= MAX_DURATION_MINUTES:
        assert parse_duration(f"{hours}h{mins}m") == total
        assert parse_duration(str(total)) == total
    else:
        with pytest.raises(InvalidInput, match="far too long"):
            parse_duration(f"{hours}h{mins}m")


@settings(max_examples=500, deadline=None, database=None)
@given(text=st.text(max_size=25))
@example("0001-01-01 00:30")  # would be year 0 in UTC
@example("9999-12-31 23:59")
@example("2027-03-28 02:30")  # does not exist
def test_parse_local_datetime_returns_aware_utc_or_refuses(text):
    try:
        moment = parse_local_datetime(text, tz=OSLO, now=oslo("2026-12-01 10:00"))
    except InvalidInput as error:
        assert error.message.strip()
    else:
        assert moment.tzinfo is UTC


@settings(max_examples=300, deadline=None, database=None)
@given(moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2199, 12, 31)))
def test_parse_local_datetime_round_trips_every_existing_minute(moment):
    """DST: every wall-clock minute that exists parses back to itself; the gap is refused."""
    moment = moment.replace(second=0, microsecond=0)
    text = f"{moment:%Y-%m-%d %H:%M}"
    try:
        parsed = parse_local_datetime(text, tz=OSLO, now=oslo("2026-12-01 10:00"))
    except InvalidInput as error:
        assert "does not exist" in error.message
        assert moment.month == 3 and moment.hour == 2
    else:
        assert f"{parsed.astimezone(OSLO):%Y-%m-%d %H:%M}" == text
