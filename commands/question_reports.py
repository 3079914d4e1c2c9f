"""Teachers' error reports as lists: open ones on `/exam TEST` and support's App Home, all of
them (with their state) for `examdesk reports [TEST]`. Sending, editing and rejecting one are
``notice.send``, ``question_error.edit`` and ``question_error.reject``, for every door."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.timeparse import format_time, iso
from store.models import QuestionErrorReport, Test

OPEN = "open"
# How many open reports a view names before "… and N more".
SHOWN = 10


@dataclass(frozen=True)
class ReportLine:
    id: int
    test: str
    state: str
    reported_by: str
    reported_at: datetime
    question: str
    text_nb: str
    text_en: str
    suggested_minutes: int | None
    handled_by: str | None
    handled_at: datetime | None

    def as_json(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "test": self.test,
            "state": self.state,
            "reported_by": self.reported_by,
            "reported_at": iso(self.reported_at, tz),
            "question": self.question,
            "text_nb": self.text_nb,
            "text_en": self.text_en,
            "suggested_minutes": self.suggested_minutes,
            "handled_by": self.handled_by,
            "handled_at": iso(self.handled_at, tz),
        }

    def short(self, tz: ZoneInfo) -> str:
        about = f" ({self.question})" if self.question else ""
        return f"#{self.id}{about} at {format_time(self.reported_at, tz)}"


def reports(
    db_session: Session, *, test_id: int | None = None, only_open: bool = False
) -> list[ReportLine]:
    """Oldest first: the one waiting longest comes first."""
    query = (
        select(
            QuestionErrorReport.id,
            Test.code,
            QuestionErrorReport.state,
            QuestionErrorReport.reported_by,
            QuestionErrorReport.reported_at,
            QuestionErrorReport.question,
            QuestionErrorReport.text_nb,
            QuestionErrorReport.text_en,
            QuestionErrorReport.suggested_minutes,
            QuestionErrorReport.handled_by,
            QuestionErrorReport.handled_at,
        )
        .join(Test, Test.id == QuestionErrorReport.test_id)
        .order_by(QuestionErrorReport.reported_at, QuestionErrorReport.id)
    )
    if test_id is not None:
        query = query.where(QuestionErrorReport.test_id == test_id)
    if only_open:
        query = query.where(QuestionErrorReport.state == OPEN)
    return [ReportLine(*row) for row in db_session.execute(query)]


def open_line(found: list[ReportLine], tz: ZoneInfo) -> str:
    """`/exam TEST`'s line on the test's open reports."""
    if not found:
        return "Error reports: none open"
    shown = ", ".join(r.short(tz) for r in found[:SHOWN])
    more = len(found) - SHOWN
    return (
        f"Error reports: {len(found)} open ({shown}"
        + (f", …{more} more" if more > 0 else "")
        + ") — send, edit or reject them on the report in the support channel or with "
        "`examdesk reports`"
    )


def listing_text(found: list[ReportLine], tz: ZoneInfo, *, test: str | None = None) -> str:
    """`examdesk reports [TEST]`: one block per report, with what can be done with it."""
    if not found:
        return f"No error reports{f' for {test}' if test else ''}."
    blocks = []
    for r in found:
        head = f"#{r.id} {r.test} · {r.state} · reported by {r.reported_by} at " + format_time(
            r.reported_at, tz
        )
        if r.handled_by:
            head += f" · {r.state} by {r.handled_by} at {format_time(r.handled_at, tz)}"
        lines = [head]
        if r.question:
            lines.append(f"  question: {r.question}")
        if r.text_nb:
            lines.append(f"  nb: {r.text_nb}")
        if r.text_en:
            lines.append(f"  en: {r.text_en}")
        if r.suggested_minutes:
            lines.append(f"  teacher suggests {r.suggested_minutes} min incident time for all")
        blocks.append("\n".join(lines))
    opened = sum(1 for r in found if r.state == OPEN)
    tail = (
        f"{opened} open. Send one: `examdesk reports --send ID --as USER`; edit: `--edit ID "
        "--nb TEXT --en TEXT`; reject: `--reject ID --reason TEXT`."
        if opened
        else "None open."
    )
    return "\n\n".join(blocks) + "\n\n" + tail
