"""A candidate's status as data: the keys of `examdesk status --json` (DESIGN.md)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from commands.timeparse import iso
from commands.timing import timing
from store.models import AnyCandidate, AnyTest


def candidate_status(candidate: AnyCandidate, test: AnyTest, tz: ZoneInfo) -> dict[str, Any]:
    t = timing(candidate, test)
    return {
        "test": test.code,
        "candidate": candidate.number,
        "status": candidate.status,
        "exam_end": iso(t.exam_end, tz),
        "upload_allowance_minutes": t.allowance_minutes,
        "ordinary_end": iso(t.ordinary_end, tz),
        "individual_end": iso(t.individual_end, tz),
        "extra_minutes": t.extra_minutes,
        "incident_minutes": t.incident_minutes,
        "end_time": iso(t.end_time, tz),
        "new_delivery": None
        if t.reopening is None
        else {"mode": t.reopening.mode, "deadline": iso(t.reopen_deadline, tz)},
        "deadline": iso(t.deadline, tz),
        "submitted_at": iso(candidate.submitted_at, tz),
    }
