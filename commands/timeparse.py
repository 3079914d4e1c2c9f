"""Durations and date-times as users type them, and times as users read them.

Input and output are in the exam office's time zone; storage is UTC. A wall-clock time that
does not exist (spring forward) is refused; one that occurs twice (fall back) is taken at
its first occurrence and always shown with its UTC offset, so nobody has to guess.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from commands.errors import InvalidInput
from commands.text import clip

MAX_DURATION_MINUTES = 7 * 24 * 60
DURATION_FORMS = "minutes (15) or hours and minutes (1h30m, 45m, 2h)"
DATETIME_FORMS = "YYYY-MM-DD HH:MM or HH:MM (today), in the exam office's time zone"

# ASCII digits only: Python's \d and int() also take other scripts' digits, which nobody types
# on purpose here. Ten digits are plenty and keep int() far from its size limits.
_DURATION = re.compile(
    r"^(?:(?P<bare>\d{1,10})|(?:(?P<h>\d{1,10})h)?(?:(?P<m>\d{1,10})m(?:in)?)?)$", re.ASCII
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$", re.ASCII)
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$", re.ASCII)
# Far enough for any exam, and clear of datetime's limits when converting between zones.
YEARS = range(2000, 2200)


def parse_duration(text: str) -> int:
    """Minutes in ``text``; refuses negatives, zero-length nonsense and absurd sizes."""
    raw = text.strip().lower()
    match = _DURATION.match(raw)
    if not raw or not match or (match["bare"] is None and not (match["h"] or match["m"])):
        if re.fullmatch(r"\d{11,}", raw, re.ASCII):
            raise InvalidInput(
                f"{raw[:12]}… minutes is far too long; the most examdesk accepts is "
                f"{format_duration(MAX_DURATION_MINUTES)}. Check the number and try again."
            )
        hint = " Durations are never negative." if raw.startswith("-") else ""
        raise InvalidInput(f"'{clip(text)}' is not a duration.{hint} Write {DURATION_FORMS}.")
    if match["bare"] is not None:
        minutes = int(match["bare"])
    else:
        minutes = int(match["h"] or 0) * 60 + int(match["m"] or 0)
        if match["h"] and int(match["m"] or 0) >= 60:
            hours, rest = divmod(minutes, 60)
            raise InvalidInput(
                f"'{clip(text)}' has {int(match['m'])} minutes after the hours; write "
                + (f"{hours}h{rest}m." if rest else f"{hours}h.")
            )
    if minutes > MAX_DURATION_MINUTES:
        raise InvalidInput(
            f"{format_duration(minutes)} is far too long; the most examdesk accepts is "
            f"{format_duration(MAX_DURATION_MINUTES)}. Check the number and try again."
        )
    return minutes


def format_duration(minutes: int) -> str:
    sign = "-" if minutes < 0 else ""
    hours, mins = divmod(abs(minutes), 60)
    if hours and mins:
        return f"{sign}{hours} h {mins} min"
    if hours:
        return f"{sign}{hours} h"
    return f"{sign}{mins} min"


def parse_local_datetime(text: str, *, tz: ZoneInfo, now: datetime) -> datetime:
    """An aware UTC datetime from ``YYYY-MM-DD HH:MM`` or ``HH:MM`` (today) in ``tz``."""
    parts = text.split()
    if len(parts) == 1:
        day, clock = now.astimezone(tz).date(), parts[0]
    elif len(parts) == 2:
        day, clock = _parse_date(parts[0]), parts[1]
    else:
        raise InvalidInput(f"'{clip(text)}' is not a date and time. Write {DATETIME_FORMS}.")
    return local_to_utc(day, _parse_time(clock, text), tz=tz)


def local_to_utc(day: date, clock: time, *, tz: ZoneInfo) -> datetime:
    if day.year not in YEARS:
        raise InvalidInput(
            f"{day.isoformat()} is not a plausible exam date; use a year from {YEARS.start} to "
            f"{YEARS.stop - 1}."
        )
    local = datetime.combine(day, clock, tzinfo=tz)
    # A round trip through UTC moves a time in the spring-forward gap; that is how we spot it.
    back = local.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None) != local.replace(tzinfo=None):
        raise InvalidInput(
            f"{day.isoformat()} {clock.strftime('%H:%M')} does not exist in {tz.key}: the "
            "clocks are put forward that night. Choose a time before or after the change."
        )
    return local.astimezone(UTC)


def _parse_date(text: str) -> date:
    match = _DATE.match(text)
    if not match:
        raise InvalidInput(f"'{clip(text)}' is not a date. Write YYYY-MM-DD, e.g. 2026-12-01.")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise InvalidInput(f"{text} is not a date in the calendar. Check day and month.") from None


def _parse_time(text: str, whole: str) -> time:
    match = _TIME.match(text)
    if not match:
        raise InvalidInput(f"'{clip(whole)}' is not a date and time. Write {DATETIME_FORMS}.")
    hour, minute = int(match[1]), int(match[2])
    if hour > 23 or minute > 59:
        raise InvalidInput(f"{text} is not a time of day. Use 00:00 to 23:59.")
    return time(hour, minute)


def format_time(moment: datetime | None, tz: ZoneInfo) -> str:
    """``2026-12-01 13:15 CET``: minute precision, zone abbreviation shows DST."""
    if moment is None:
        return "none"
    shown = moment.astimezone(tz)
    return f"{shown:%Y-%m-%d %H:%M} {shown.tzname()}"


def iso(moment: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 with the offset, to the minute like every time examdesk shows."""
    if moment is None:
        return None
    return moment.astimezone(tz).replace(second=0, microsecond=0).isoformat()


def relative_to_ordinary_end(ordinary_end: datetime, moment: datetime) -> str:
    """R7: a deadline as minutes after (or before) the test's ordinary end."""
    minutes = minutes_between(ordinary_end, moment)
    side = "after" if minutes >= 0 else "before"
    amount = abs(minutes)
    spelled = f" ({format_duration(amount)})" if amount >= 60 else ""
    return f"{amount} min{spelled} {side} the ordinary end"


def minutes_between(start: datetime, end: datetime) -> int:
    return int((end - start) / timedelta(minutes=1))
