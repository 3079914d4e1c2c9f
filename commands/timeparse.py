"""Durations and date-times as users type them, and times as users read them.

Input and output are in the exam office's time zone; storage is UTC. A wall-clock time that
does not exist (spring forward) is refused; one that occurs twice (fall back) is taken at
its first occurrence and always shown with its UTC offset, so nobody has to guess.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from commands.errors import InvalidInput
from commands.language import _, current, locale
from commands.text import clip

MAX_DURATION_MINUTES = 7 * 24 * 60


def duration_forms() -> str:
    return _("minutes (15) or hours and minutes (1h30m, 45m, 2h)")


def datetime_forms() -> str:
    return _("YYYY-MM-DD HH:MM or HH:MM (today), in the exam office's time zone")


# ASCII digits only: Python's \d and int() also take other scripts' digits, which nobody types
# on purpose here. Ten digits are plenty and keep int() far from its size limits.
_DURATION = re.compile(
    r"^(?:(?P<bare>\d{1,10})|(?:(?P<h>\d{1,10})h)?(?:(?P<m>\d{1,10})m(?:in)?)?)$", re.ASCII
)
# A duration typed in words of its own: "1h 30m", "1 h 30 min", "90 min", "2 h".
_SPACED_DURATION = re.compile(
    r"\d{1,10} ?h(?: ?\d{1,10} ?m(?:in)?)?|\d{1,10} ?m(?:in)?", re.ASCII | re.IGNORECASE
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
                _(
                    "{number}… minutes is far too long; the most examdesk accepts is "
                    "{most}. Check the number and try again."
                ).format(number=raw[:12], most=format_duration(MAX_DURATION_MINUTES))
            )
        if raw.startswith("-"):
            raise InvalidInput(
                _(
                    "'{text}' is not a duration. Durations are never negative. Write {forms}."
                ).format(text=clip(text), forms=duration_forms())
            )
        raise InvalidInput(
            _("'{text}' is not a duration. Write {forms}.").format(
                text=clip(text), forms=duration_forms()
            )
        )
    if match["bare"] is not None:
        minutes = int(match["bare"])
    else:
        minutes = int(match["h"] or 0) * 60 + int(match["m"] or 0)
        if match["h"] and int(match["m"] or 0) >= 60:
            hours, rest = divmod(minutes, 60)
            raise InvalidInput(
                _("'{text}' has {minutes} minutes after the hours; write {right}.").format(
                    text=clip(text),
                    minutes=int(match["m"]),
                    right=f"{hours}h{rest}m" if rest else f"{hours}h",
                )
            )
    if minutes > MAX_DURATION_MINUTES:
        raise InvalidInput(
            _(
                "{duration} is far too long; the most examdesk accepts is {most}. Check the "
                "number and try again."
            ).format(duration=format_duration(minutes), most=format_duration(MAX_DURATION_MINUTES))
        )
    return minutes


def duration_words(words: list[str]) -> tuple[str, list[str]]:
    """The duration that ``words`` start with, as one word, and the words after it. Typed
    as "1h 30m" or "2 h" it is still one duration: "30m" is not the start of the reason,
    nor is "2 h" two minutes."""
    for count in range(min(len(words), 4), 1, -1):
        joined = " ".join(words[:count])
        if _SPACED_DURATION.fullmatch(joined):
            return joined.replace(" ", ""), words[count:]
    return words[0], words[1:]


def format_duration(minutes: int) -> str:
    """``1 h 30 min`` (Norwegian: ``1 t 30 min``)."""
    sign = "-" if minutes < 0 else ""
    hours, mins = divmod(abs(minutes), 60)
    if hours and mins:
        return sign + _("{hours} h {minutes} min").format(hours=hours, minutes=mins)
    if hours:
        return sign + _("{hours} h").format(hours=hours)
    return sign + _("{minutes} min").format(minutes=mins)


def parse_local_datetime(text: str, *, tz: ZoneInfo, now: datetime) -> datetime:
    """An aware UTC datetime from ``YYYY-MM-DD HH:MM`` or ``HH:MM`` (today) in ``tz``."""
    parts = text.split()
    if len(parts) == 1:
        day, clock = now.astimezone(tz).date(), parts[0]
    elif len(parts) == 2:
        day, clock = _parse_date(parts[0]), parts[1]
    else:
        raise InvalidInput(
            _("'{text}' is not a date and time. Write {forms}.").format(
                text=clip(text), forms=datetime_forms()
            )
        )
    return local_to_utc(day, _parse_time(clock, text), tz=tz)


def local_to_utc(day: date, clock: time, *, tz: ZoneInfo) -> datetime:
    if day.year not in YEARS:
        raise InvalidInput(
            _("{day} is not a plausible exam date; use a year from {first} to {last}.").format(
                day=day.isoformat(), first=YEARS.start, last=YEARS.stop - 1
            )
        )
    local = datetime.combine(day, clock, tzinfo=tz)
    # A round trip through UTC moves a time in the spring-forward gap; that is how we spot it.
    back = local.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None) != local.replace(tzinfo=None):
        raise InvalidInput(
            _(
                "{day} {time} does not exist in {zone}: the clocks are put forward that "
                "night. Choose a time before or after the change."
            ).format(day=day.isoformat(), time=clock.strftime("%H:%M"), zone=tz.key)
        )
    return local.astimezone(UTC)


def _parse_date(text: str) -> date:
    match = _DATE.match(text)
    if not match:
        raise InvalidInput(
            _("'{text}' is not a date. Write YYYY-MM-DD, e.g. 2026-12-01.").format(text=clip(text))
        )
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise InvalidInput(
            _("{text} is not a date in the calendar. Check day and month.").format(text=text)
        ) from None


def _parse_time(text: str, whole: str) -> time:
    match = _TIME.match(text)
    if not match:
        raise InvalidInput(
            _("'{text}' is not a date and time. Write {forms}.").format(
                text=clip(whole), forms=datetime_forms()
            )
        )
    hour, minute = int(match[1]), int(match[2])
    if hour > 23 or minute > 59:
        raise InvalidInput(_("{text} is not a time of day. Use 00:00 to 23:59.").format(text=text))
    return time(hour, minute)


def format_time(moment: datetime | None, tz: ZoneInfo) -> str:
    """``2026-12-01 13:15 CET``: minute precision, zone abbreviation shows DST. Norwegian:
    ``01.12.2026 kl. 13:15 CET``."""
    if moment is None:
        return _("none")
    shown = moment.astimezone(tz)
    if current() == "en":
        return f"{shown:%Y-%m-%d %H:%M} {shown.tzname()}"
    day_and_time = format_datetime(shown, "dd.MM.yyyy 'kl.' HH:mm", locale=locale())
    return f"{day_and_time} {shown.tzname()}"


def iso(moment: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 with the offset, to the minute like every time examdesk shows."""
    if moment is None:
        return None
    return moment.astimezone(tz).replace(second=0, microsecond=0).isoformat()


def relative_to_ordinary_end(ordinary_end: datetime, moment: datetime) -> str:
    """R7: a deadline as minutes after (or before) the test's ordinary end."""
    minutes = minutes_between(ordinary_end, moment)
    amount = abs(minutes)
    spelled = f" ({format_duration(amount)})" if amount >= 60 else ""
    if minutes >= 0:
        return _("{minutes} min{spelled} after the ordinary end").format(
            minutes=amount, spelled=spelled
        )
    return _("{minutes} min{spelled} before the ordinary end").format(
        minutes=amount, spelled=spelled
    )


def minutes_between(start: datetime, end: datetime) -> int:
    return int((end - start) / timedelta(minutes=1))
