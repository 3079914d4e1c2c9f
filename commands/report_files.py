"""The incident report as files: CSV and XLSX for people, JSON for scripts.

CSV is written for Excel as the exam office opens it: UTF-8 with a byte-order mark (without
it Excel reads æ, ø, å as two characters each) and `;` between fields, the list separator
of Excel in a Norwegian locale, where `,` is the decimal separator. The candidates come
first, then an empty line and the notices under their own header. Times are the office's
wall-clock time to the minute (`YYYY-MM-DD HH:MM`); in XLSX they are date cells.

A cell that begins with `=`, `+`, `-`, `@` or a control character would be read by Excel as
a formula (a reason typed in Slack could be one): in CSV such a text gets a leading `'`, in
XLSX it is stored as a plain string.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from commands.context import Ctx
from commands.reply import Reply
from commands.report import (
    CHANNELS,
    STATUSES,
    CandidateRow,
    NoticeFact,
    Report,
    for_asker,
    summary,
    summary_data,
)
from commands.timeparse import iso
from notifications import outbox
from notifications.slack_post import FILE_UPLOAD

FORMATS = ("csv", "xlsx", "json")
SEPARATOR = ";"
BOM = "\ufeff"
TIME = "%Y-%m-%d %H:%M"

CANDIDATE_HEADER = (
    "Test",
    "Candidate",
    "Status",
    "Extra time (min)",
    "Incident time (min)",
    "Incident time changes",
    "Postponed deadline",
    "Individual deadline",
    "End time",
    "New delivery",
    "Delivered for the candidate",
    "Delivered at",
    "After the ordinary end (min)",
)
NOTICE_HEADER = (
    "Notice",
    "Sent at",
    "Sent by",
    "Text",
    "In-app",
    "Read",
    *(f"{'SMS' if c == 'sms' else 'E-mail'} {s}" for c in CHANNELS for s in STATUSES),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ------------------------------------------------------------------ JSON


def as_json(report: Report, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "test": report.test,
        "title": report.title,
        "kind": report.kind,
        "start": iso(report.start, tz),
        "exam_end": iso(report.exam_end, tz),
        "ordinary_end": iso(report.ordinary_end, tz),
        "generated_at": iso(report.generated_at, tz),
        "counts": report.counts(),
        "candidates": [_row_json(row, tz) for row in report.rows],
        "notices": [_notice_json(n, tz) for n in report.notices],
    }


def _row_json(row: CandidateRow, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "candidate": row.candidate,
        "status": row.status,
        "deviations": row.deviations(),
        "extra_minutes": row.extra_minutes,
        "incident_minutes": row.incident_minutes,
        "incident_changes": [
            {
                "at": iso(c.at, tz),
                "by": c.by,
                "operation": c.operation,
                "before_minutes": c.before_minutes,
                "after_minutes": c.after_minutes,
                "reason": c.reason,
            }
            for c in row.incident_changes
        ],
        "postponed_deadline": iso(row.postponed_deadline, tz),
        "individual_deadline": iso(row.individual_deadline, tz),
        "individual_end": iso(row.individual_end, tz),
        "end_time": iso(row.end_time, tz),
        "reopenings": [
            {
                "mode": r.mode,
                "deadline": iso(r.deadline, tz),
                "opened_at": iso(r.opened_at, tz),
                "opened_by": r.opened_by,
                "reason": r.reason,
                "closed_at": iso(r.closed_at, tz),
                "closed_by": r.closed_by,
                "closed": r.closed,
            }
            for r in row.reopenings
        ],
        "deliveries": [
            {
                "at": iso(d.at, tz),
                "by": d.by,
                "file_name": d.file_name,
                "file_size": d.file_size,
                "sha256": d.sha256,
            }
            for d in row.deliveries
        ],
        "submitted_at": iso(row.submitted_at, tz),
        "after_ordinary_end_minutes": row.after_ordinary_end_minutes,
    }


def _notice_json(notice: NoticeFact, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": notice.id,
        "sent_at": iso(notice.sent_at, tz),
        "by": notice.by,
        "text_nb": notice.text_nb,
        "text_en": notice.text_en,
        "inapp": notice.inapp,
        "read": notice.read,
        **{channel: notice.deliveries[channel] for channel in CHANNELS},
    }


# ------------------------------------------------------------------ rows for a sheet


def _when(moment: datetime | None, tz: ZoneInfo) -> str:
    return "" if moment is None else moment.astimezone(tz).strftime(TIME)


def _candidate_cells(row: CandidateRow, tz: ZoneInfo) -> list[Any]:
    """One row's cells; times as aware datetimes (each writer shows them its way)."""
    changes = "\n".join(
        f"{_when(c.at, tz)} {c.operation} {c.before_minutes} → {c.after_minutes} min "
        f"by {c.by}: {c.reason}"
        for c in row.incident_changes
    )
    reopenings = "\n".join(
        f"{r.mode} until {_when(r.deadline, tz) or 'no limit'}, opened {_when(r.opened_at, tz)} "
        f"by {r.opened_by}: {r.reason}; "
        + (
            "still open"
            if r.closed == "open"
            else f"closed {_when(r.closed_at, tz)} by {r.closed_by} ({_CLOSED[r.closed]})"
        )
        for r in row.reopenings
    )
    deliveries = "\n".join(
        f"{d.file_name} ({d.file_size} bytes, sha256 {d.sha256}) by {d.by} at {_when(d.at, tz)}"
        for d in row.deliveries
    )
    return [
        None,  # the test's code, filled in by the caller
        row.candidate,
        row.status,
        row.extra_minutes,
        row.incident_minutes,
        changes,
        row.postponed_deadline,
        row.individual_deadline,
        row.end_time,
        reopenings,
        deliveries,
        row.submitted_at,
        row.after_ordinary_end_minutes,
    ]


_CLOSED = {
    "current": "current answer delivered",
    "reverted": "answer from before the reopening delivered",
    "automatic": "delivered automatically at its deadline",
}


def _notice_cells(notice: NoticeFact) -> list[Any]:
    if notice.text_nb and notice.text_en and notice.text_nb != notice.text_en:
        text = f"nb: {notice.text_nb}\nen: {notice.text_en}"
    else:
        text = notice.text_nb or notice.text_en
    return [
        notice.id,
        notice.sent_at,
        notice.by,
        text,
        notice.inapp,
        notice.read,
        *(notice.deliveries[c][s] for c in CHANNELS for s in STATUSES),
    ]


# ------------------------------------------------------------------ CSV


def as_csv(report: Report, tz: ZoneInfo) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=SEPARATOR, lineterminator="\r\n")
    candidate_rows, notice_rows = _sheets_in(report, tz)
    writer.writerow(CANDIDATE_HEADER)
    writer.writerows([_csv_cell(c, tz) for c in row] for row in candidate_rows)
    writer.writerow([])
    writer.writerow(NOTICE_HEADER)
    writer.writerows([_csv_cell(c, tz) for c in row] for row in notice_rows)
    return (BOM + out.getvalue()).encode("utf-8")


def _sheets_in(report: Report, tz: ZoneInfo) -> tuple[list[list[Any]], list[list[Any]]]:
    candidate_rows = []
    for row in report.rows:
        cells = _candidate_cells(row, tz)
        cells[0] = report.test
        candidate_rows.append(cells)
    return candidate_rows, [_notice_cells(n) for n in report.notices]


def _csv_cell(value: Any, tz: ZoneInfo) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _when(value, tz)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


# ------------------------------------------------------------------ XLSX


def as_xlsx(report: Report, tz: ZoneInfo) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    book = Workbook()
    candidates = book.active
    candidates.title = "Candidates"
    notices = book.create_sheet("Notices")
    candidate_rows, notice_rows = _sheets_in(report, tz)
    bold, wrap = Font(bold=True), Alignment(wrap_text=True, vertical="top")
    for sheet, header, rows in (
        (candidates, CANDIDATE_HEADER, candidate_rows),
        (notices, NOTICE_HEADER, notice_rows),
    ):
        sheet.append(list(header))
        for cell in sheet[1]:
            cell.font = bold
        for r, row in enumerate(rows, start=2):
            for c, value in enumerate(row, start=1):
                cell = sheet.cell(row=r, column=c, value=_xlsx_value(value, tz))
                if isinstance(value, datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm"
                elif isinstance(value, str):
                    # Never a formula, whatever the text begins with.
                    cell.data_type = "s"
                    cell.alignment = wrap
        sheet.freeze_panes = "A2"
        for column in sheet.columns:
            longest = max(
                (len(line) for cell in column for line in str(cell.value or "").split("\n")),
                default=8,
            )
            sheet.column_dimensions[column[0].column_letter].width = min(max(longest, 8) + 2, 60)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _xlsx_value(value: Any, tz: ZoneInfo) -> Any:
    if isinstance(value, datetime):
        # Excel has no time zones: the office's wall-clock time, to the minute.
        return value.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    return value


# ------------------------------------------------------------------ `/exam TEST report`


def run(ctx: Ctx, test_code: str) -> Reply:
    """The summary, and the CSV file to the asker in Slack as a direct message (through the
    outbox, written with this reply's transaction)."""
    report = for_asker(ctx, test_code)
    name = f"{report.test}-incident-report.csv"
    if ctx.outside.logs_only("slack"):
        told = (
            "Slack is not configured here, so no file is sent; "
            f"`examdesk report {report.test} --output {name}` writes it."
        )
    else:
        outbox.enqueue(
            ctx.db_session,
            kind=outbox.SLACK_POST,
            target=ctx.actor,
            payload={
                "method": FILE_UPLOAD,
                "args": {
                    "filename": name,
                    "title": f"Incident report of {report.test}",
                    "content": as_csv(report, ctx.tz).decode("utf-8"),
                    "initial_comment": f"The incident report of {report.test}, as a CSV file.",
                },
            },
        )
        told = f"The whole report ({name}) comes to you as a direct message from examdesk."
    return Reply(
        text=f"{summary(report, ctx.tz)}\n{told}", kind="report", data=summary_data(report)
    )
