"""The incident report of a test: every candidate whose exam did not go as printed.

One row per candidate with any deviation: accommodation extra time, incident time (the
total and each change, with its reason and who), a postponed or individual deadline (R2),
reopenings (R6–R8: mode, deadline, how closed), files delivered on the candidate's behalf
(R10), and a delivery after the ordinary end, by how much. Then the test's notices with how
far each came (R13). Graders are told from it which candidates delivered late and why.

`examdesk report` writes it as CSV, XLSX or JSON (``commands.report_files``); `/exam TEST
report` answers with a summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from commands import history
from commands.context import Ctx
from commands.delivery import SYSTEM_ACTOR
from commands.language import N_, _, ngettext
from commands.language import number as number_of
from commands.permissions import test_for_support_or_teacher
from commands.timeparse import format_duration, format_time
from commands.timing import end_time, individual_end, ordinary_end, reopen_deadline
from notifications.delivery_states import (
    DELIVERED,
    FAILED,
    LOGGED,
    PENDING,
    SENT,
    UNDELIVERED,
    as_reported,
)
from store.models import (
    Candidate,
    Delivery,
    Notice,
    NoticeReceipt,
    Reopening,
    Submission,
    Test,
)

# The delivery statuses a report counts (DESIGN.md); the notifier's passing states count
# as pending (delivery_states.as_reported).
STATUSES = (PENDING, SENT, DELIVERED, FAILED, UNDELIVERED, LOGGED)
CHANNELS = ("sms", "email")
SUMMARY_ROWS = 10


@dataclass(frozen=True)
class IncidentChange:
    at: datetime
    by: str
    operation: str  # add | subtract | set
    before_minutes: int
    after_minutes: int
    reason: str


@dataclass(frozen=True)
class ReopeningFact:
    mode: str
    deadline: datetime | None  # None: no-limit
    opened_at: datetime
    opened_by: str
    reason: str
    closed_at: datetime | None
    closed_by: str | None
    # open | current | reverted | automatic (at its deadline, R9)
    closed: str


@dataclass(frozen=True)
class DeliveryFact:
    at: datetime
    by: str
    file_name: str | None
    file_size: int | None
    sha256: str | None


@dataclass
class CandidateRow:
    candidate: str
    status: str
    extra_minutes: int
    incident_minutes: int
    postponed_deadline: datetime | None
    individual_deadline: datetime | None
    individual_end: datetime | None
    end_time: datetime
    submitted_at: datetime | None
    incident_changes: list[IncidentChange] = field(default_factory=list)
    reopenings: list[ReopeningFact] = field(default_factory=list)
    deliveries: list[DeliveryFact] = field(default_factory=list)
    # Whole minutes after the test's ordinary end, when the answer came after it.
    after_ordinary_end_minutes: int | None = None

    def deviations(self) -> list[str]:
        found = []
        if self.extra_minutes:
            found.append("extra")
        if self.incident_minutes or self.incident_changes:
            found.append("incident")
        if self.individual_end is not None:
            found.append("own_end")
        if self.reopenings:
            found.append("reopened")
        if self.deliveries:
            found.append("delivered_for")
        if self.after_ordinary_end_minutes is not None:
            found.append("after_ordinary_end")
        return found


@dataclass(frozen=True)
class NoticeFact:
    id: int
    sent_at: datetime
    by: str
    text_nb: str
    text_en: str
    inapp: int
    read: int
    # channel → status → count, every status of STATUSES present
    deliveries: dict[str, dict[str, int]]


@dataclass
class Report:
    test: str
    title: str
    kind: str
    start: datetime
    exam_end: datetime
    ordinary_end: datetime
    generated_at: datetime
    candidates: int
    rows: list[CandidateRow]
    notices: list[NoticeFact]

    def counts(self) -> dict[str, int]:
        counts = {
            key: 0
            for key in (
                "extra",
                "incident",
                "own_end",
                "reopened",
                "delivered_for",
                "after_ordinary_end",
            )
        }
        for row in self.rows:
            for key in row.deviations():
                counts[key] += 1
        return {"candidates": self.candidates, "listed": len(self.rows), **counts}


def build(db_session: Session, test: Test, *, now: datetime) -> Report:
    """The report's facts from the database: the candidates with a deviation, in number order."""
    ordinary = ordinary_end(test)
    candidates = db_session.scalars(
        select(Candidate)
        .where(Candidate.test_id == test.id)
        .options(selectinload(Candidate.reopenings))
        .order_by(Candidate.number)
    ).all()
    changes = _incident_changes(db_session, test)
    deliveries = _deliveries_for(db_session, [c.id for c in candidates])
    rows = []
    for candidate in candidates:
        own_end = end_time(candidate, test)
        row = CandidateRow(
            candidate=candidate.number,
            status=candidate.status,
            extra_minutes=candidate.extra_minutes,
            incident_minutes=candidate.incident_minutes,
            postponed_deadline=candidate.postponed_deadline,
            individual_deadline=candidate.individual_deadline,
            individual_end=individual_end(candidate),
            end_time=own_end,
            submitted_at=candidate.submitted_at,
            incident_changes=changes.get(candidate.number, []),
            reopenings=[_reopening(r, candidate, test) for r in candidate.reopenings],
            deliveries=deliveries.get(candidate.id, []),
        )
        if candidate.submitted_at is not None and candidate.submitted_at > ordinary:
            # Rounded, but never "0 min" late: a few seconds late is late.
            late = (candidate.submitted_at - ordinary) / timedelta(minutes=1)
            row.after_ordinary_end_minutes = max(1, round(late))
        if row.deviations():
            rows.append(row)
    return Report(
        test=test.code,
        title=test.title,
        kind=test.kind,
        start=test.start,
        exam_end=test.end,
        ordinary_end=ordinary,
        generated_at=now,
        candidates=len(candidates),
        rows=rows,
        notices=_notices(db_session, test),
    )


def _incident_changes(db_session: Session, test: Test) -> dict[str, list[IncidentChange]]:
    """Each candidate's incident-time changes (R4), from the change record."""
    found: dict[str, list[IncidentChange]] = {}
    for entry in history.entries(db_session, test):
        if entry.action not in history.BY_NUMBER:
            continue
        operation = entry.action.removeprefix("incident_time_")
        for part in entry.parts:
            found.setdefault(part.candidate, []).append(
                IncidentChange(
                    at=entry.at,
                    by=entry.actor,
                    operation=operation,
                    before_minutes=part.before.get("incident_minutes", 0),
                    after_minutes=part.after.get("incident_minutes", 0),
                    reason=entry.reason,
                )
            )
    return found


def _deliveries_for(db_session: Session, candidate_ids: list[int]) -> dict[int, list[DeliveryFact]]:
    """Files staff delivered on candidates' behalf (R10)."""
    found: dict[int, list[DeliveryFact]] = {}
    if not candidate_ids:
        return found
    rows = db_session.execute(
        select(
            Submission.candidate_id,
            Submission.at,
            Submission.by,
            Submission.file_name,
            Submission.file_size,
            Submission.sha256,
        )
        .where(Submission.candidate_id.in_(candidate_ids), Submission.source == "staff_file")
        .order_by(Submission.at, Submission.id)
    )
    for candidate_id, *facts in rows:
        found.setdefault(candidate_id, []).append(DeliveryFact(*facts))
    return found


def _reopening(reopening: Reopening, candidate: Candidate, test: Test) -> ReopeningFact:
    if reopening.closed_at is None:
        closed = "open"
    elif reopening.closed_by == SYSTEM_ACTOR:
        closed = "automatic"
    else:
        closed = reopening.close_choice or "current"
    return ReopeningFact(
        mode=reopening.mode,
        deadline=reopen_deadline(reopening, candidate, test),
        opened_at=reopening.opened_at,
        opened_by=reopening.opened_by,
        reason=reopening.reason,
        closed_at=reopening.closed_at,
        closed_by=reopening.closed_by,
        closed=closed,
    )


def _notices(db_session: Session, test: Test) -> list[NoticeFact]:
    notices = db_session.execute(
        select(Notice.id, Notice.created_at, Notice.created_by, Notice.text_nb, Notice.text_en)
        .where(Notice.test_id == test.id)
        .order_by(Notice.created_at, Notice.id)
    ).all()
    if not notices:
        return []
    ids = [n.id for n in notices]
    receipts = {
        notice_id: (count, read)
        for notice_id, count, read in db_session.execute(
            select(
                NoticeReceipt.notice_id,
                func.count(NoticeReceipt.id),
                func.count(NoticeReceipt.read_at),
            )
            .where(NoticeReceipt.notice_id.in_(ids))
            .group_by(NoticeReceipt.notice_id)
        )
    }
    by_notice: dict[int, dict[str, dict[str, int]]] = {
        id_: {channel: dict.fromkeys(STATUSES, 0) for channel in CHANNELS} for id_ in ids
    }
    for notice_id, channel, status, count in db_session.execute(
        select(Delivery.notice_id, Delivery.channel, Delivery.status, func.count())
        .where(Delivery.notice_id.in_(ids))
        .group_by(Delivery.notice_id, Delivery.channel, Delivery.status)
    ):
        counts = by_notice[notice_id].setdefault(channel, dict.fromkeys(STATUSES, 0))
        shown = as_reported(status)
        counts[shown] = counts.get(shown, 0) + count
    return [
        NoticeFact(
            id=n.id,
            sent_at=n.created_at,
            by=n.created_by,
            text_nb=n.text_nb,
            text_en=n.text_en,
            inapp=receipts.get(n.id, (0, 0))[0],
            read=receipts.get(n.id, (0, 0))[1],
            deliveries=by_notice[n.id],
        )
        for n in notices
    ]


# ------------------------------------------------------------------ `/exam TEST report`


def for_asker(ctx: Ctx, test_code: str) -> Report:
    """The report of ``test_code``, for support or a teacher of the test."""
    test, _role = test_for_support_or_teacher(
        db_session=ctx.db_session, user_id=ctx.actor, test_code=test_code, doing=_("see its report")
    )
    return build(ctx.db_session, test, now=ctx.now)


LABELS = {
    "extra": N_("extra time"),
    "incident": N_("incident time"),
    "own_end": N_("individual end"),
    "reopened": N_("new delivery"),
    "delivered_for": N_("delivered for by staff"),
    "after_ordinary_end": N_("delivered after the ordinary end"),
}


def summary(report: Report, tz: ZoneInfo) -> str:
    counts = report.counts()
    lines = [
        _(
            "Incident report of {test}: {listed} of {count} candidates with a deviation "
            "(ordinary end {time})"
        ).format(
            test=report.test,
            listed=number_of(counts["listed"]),
            count=number_of(counts["candidates"]),
            time=format_time(report.ordinary_end, tz),
        )
    ]
    if report.rows:
        lines.append(
            "; ".join(
                f"{_(label)} {number_of(counts[key])}"
                for key, label in LABELS.items()
                if counts[key]
            )
        )
    for row in report.rows[:SUMMARY_ROWS]:
        lines.append(f"• {row.candidate}: {row_summary(row, tz)}")
    more = len(report.rows) - SUMMARY_ROWS
    if more > 0:
        lines.append(_("… and {n} more").format(n=number_of(more)))
    if report.notices:
        for notice in report.notices:
            lines.append(notice_summary(notice, tz))
    else:
        lines.append(_("Notices: none sent"))
    lines.append(
        _(
            "The whole report as a file: `examdesk report {test} --format xlsx --output "
            "{test}.xlsx` (or --format csv, json)."
        ).format(test=report.test)
    )
    return "\n".join(lines)


def row_summary(row: CandidateRow, tz: ZoneInfo) -> str:
    parts = []
    if row.extra_minutes:
        parts.append(_("extra {duration}").format(duration=format_duration(row.extra_minutes)))
    if row.incident_minutes or row.incident_changes:
        n = len(row.incident_changes)
        parts.append(
            _("incident {duration}").format(duration=format_duration(row.incident_minutes))
            + (" (" + ngettext("{n} change", "{n} changes", n).format(n=n) + ")" if n else "")
        )
    if row.individual_end is not None:
        parts.append(_("individual end {time}").format(time=format_time(row.individual_end, tz)))
    for r in row.reopenings:
        until = format_time(r.deadline, tz) if r.deadline else _("no limit")
        parts.append(
            _("new delivery {mode} until {time} ({closed})").format(
                mode=r.mode, time=until, closed=r.closed
            )
        )
    if row.deliveries:
        parts.append(_("{n} file(s) delivered for the candidate").format(n=len(row.deliveries)))
    if row.after_ordinary_end_minutes is not None and row.submitted_at is not None:
        parts.append(
            _("delivered {time}, {duration} after the ordinary end").format(
                time=format_time(row.submitted_at, tz),
                duration=format_duration(row.after_ordinary_end_minutes),
            )
        )
    return "; ".join(parts)


def notice_summary(notice: NoticeFact, tz: ZoneInfo) -> str:
    channels = []
    for channel, counts in notice.deliveries.items():
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        if shown:
            channels.append(f"{'SMS' if channel == 'sms' else _('e-mail')} {shown}")
    return _("Notice #{id} ({time}): in-app {inapp}, read {read}").format(
        id=notice.id, time=format_time(notice.sent_at, tz), inapp=notice.inapp, read=notice.read
    ) + (f"; {'; '.join(channels)}" if channels else "")


def summary_data(report: Report) -> dict[str, Any]:
    return {
        "test": report.test,
        "counts": report.counts(),
        "first": [row.candidate for row in report.rows[:SUMMARY_ROWS]],
        "notices": len(report.notices),
    }
