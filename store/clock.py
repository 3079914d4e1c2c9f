"""The program's one clock: the wall clock plus a shift.

Every "now" in examdesk comes from :func:`now`. ``EXAMDESK_CLOCK_SHIFT`` (for tests only:
``400d``, ``-2h30m``, ``90s``) sets the shift for a whole process, so a process a test
starts lives at the test's time; the test suite moves its own process with
:func:`set_shift`. Monotonic timers (timeouts, rate limits) are not times of day and keep
using :func:`time.monotonic`; request signatures (Slack, Twilio) are checked against the
real time, as the senders sign with it.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

ENV = "EXAMDESK_CLOCK_SHIFT"

# Seconds may have a fraction: a test's processes must read the very same clock.
_PART = re.compile(r"(\d+)([dhm])|(\d+(?:\.\d{1,6})?)(s)")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_shift(text: str) -> timedelta:
    """``400d``, ``-2h30m``, ``+90s`` → a timedelta; ``ValueError`` names the right form."""
    raw = text.strip()
    sign = -1 if raw.startswith("-") else 1
    body = raw.lstrip("+-")
    parts = [(n or f, u or v) for n, u, f, v in _PART.findall(body)]
    if not body or "".join(n + u for n, u in parts) != body:
        raise ValueError(
            f"{ENV}={text!r} is not a shift: write days, hours, minutes and seconds "
            "such as 400d, -2h30m or 90s"
        )
    return sign * timedelta(**{_UNITS[u]: float(n) if u == "s" else int(n) for n, u in parts})


def format_shift(delta: timedelta) -> str:
    """The inverse of :func:`parse_shift`, in seconds to the microsecond."""
    micro = abs(delta) // timedelta(microseconds=1)
    seconds, fraction = divmod(micro, 1_000_000)
    text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".")
    return f"{'-' if delta < timedelta(0) else ''}{text}s"


_shift: timedelta | None = None


def shift() -> timedelta:
    """How far this process's clock is from the wall clock; ``ValueError`` for a malformed
    ``EXAMDESK_CLOCK_SHIFT``."""
    global _shift
    if _shift is None:
        _shift = parse_shift(os.environ.get(ENV) or "0s")
    return _shift


def set_shift(delta: timedelta) -> None:
    """Move this process's clock (tests only, like ``EXAMDESK_CLOCK_SHIFT``)."""
    global _shift
    _shift = delta


def now() -> datetime:
    """The current moment, aware, in UTC."""
    return datetime.now(UTC) + shift()


def wall(at: datetime) -> datetime:
    """The real wall-clock moment at which :func:`now` reads ``at``, for libraries that
    keep their own clock (APScheduler's triggers)."""
    return at - shift()
