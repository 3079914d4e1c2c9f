"""The incident report: `examdesk report TEST` (CSV, XLSX, JSON) and `/exam TEST report`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime

import pytest
from conftest import OSLO, OTHER_TEACHER, STRANGER, SUPPORT, TEACHER, oslo
from openpyxl import load_workbook
from sqlalchemy import select, update

from commands.context import Ctx
from commands.delivery import SYSTEM_ACTOR, attach_file, deliver_due
from commands.report_files import CANDIDATE_HEADER, NOTICE_HEADER
from store.models import Delivery, NoticeReceipt

CODE = "TDT4100-2026H"
FILE_BYTES = b"%PDF-1.4 answer of candidate 10006\n"
NOTICE = "=HYPERLINK(\"http://x\") Oppgave 3: les 'minst' som 'høyst'."


@pytest.fixture
def exam(world, tmp_path):
    """School exam 09:00–13:00 with upload, ordinary end 13:15, and one candidate per kind
    of deviation, plus two without any:
    10001 delivered on time (none) · 10002 30 min extra time, delivered 13:45 ·
    10003 incident time given and taken back · 10004 an individual deadline ·
    10005 delivered, reopened after the ordinary end and delivered automatically at its
    deadline · 10006 a file delivered by staff after the end · 10007 delivered
    automatically at the ordinary end (none)."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001"], status="submitted", submitted_at=oslo("2026-12-01 12:00"))
    world.add_candidates(CODE, ["10002"], extra_minutes=30)
    world.add_candidates(CODE, ["10003", "10005", "10006", "10007"])
    world.add_candidates(CODE, ["10004"], individual_deadline=oslo("2026-12-03 13:00"))
    for when, line in (
        ("2026-12-01 10:00", f"/incident-time {CODE} 10003 add 15 network outage --quiet"),
        ("2026-12-01 10:30", f"/incident-time {CODE} 10003 subtract 15 given by mistake --quiet"),
        ("2026-12-01 11:00", f"/notice {CODE} {NOTICE}"),
    ):
        reply = world.at(when).run(line, confirmed=True)
        assert reply.ok, reply.text
    with world.factory.begin() as s:
        # Twilio's answers for the notice's SMS: 6 delivered, 1 failed; one candidate read it.
        ids = s.scalars(select(Delivery.id).order_by(Delivery.id)).all()
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:6])).values(status="delivered"))
        s.execute(update(Delivery).where(Delivery.id == ids[6]).values(status="failed"))
        first = s.scalars(select(NoticeReceipt).order_by(NoticeReceipt.id)).first()
        first.read_at = oslo("2026-12-01 11:05")
    for when, due in (
        ("2026-12-01 13:15", {"10003", "10005", "10006", "10007"}),
        ("2026-12-01 13:45", {"10002"}),  # R3: 30 min extra time
    ):
        with world.at(when).factory.begin() as s:
            ctx = Ctx(db_session=s, actor=SYSTEM_ACTOR, tz=OSLO, now=world.now)
            assert {d.candidate for d in deliver_due(ctx)} == due
    reply = world.at("2026-12-01 13:30").run(f"/reopen {CODE} 10005 in 30m upload failed")
    assert reply.ok, reply.text
    path = tmp_path / "svar 10006 æøå.pdf"
    path.write_bytes(FILE_BYTES)
    world.at("2026-12-01 13:50")
    with world.factory.begin() as s:
        attach_file(world.ctx(s), test_code=CODE, number="10006", path=path, reason="mailed in")
    world.at("2026-12-01 14:00")
    with world.factory.begin() as s:
        ctx = Ctx(db_session=s, actor=SYSTEM_ACTOR, tz=OSLO, now=world.now)
        assert [d.candidate for d in deliver_due(ctx)] == ["10005"]
    world.at("2026-12-02 09:00")
    return world


def read_csv(content: bytes) -> tuple[list[list[str]], list[list[str]]]:
    """The two tables of the CSV as Excel reads them: `;`-separated, BOM first."""
    assert content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig")), delimiter=";"))
    gap = rows.index([])
    return rows[:gap], rows[gap + 1 :]


def by_candidate(table: list[list[str]]) -> dict[str, dict[str, str]]:
    header, *rows = table
    return {row[1]: dict(zip(header, row, strict=True)) for row in rows}


def test_r2_r6_r8_r9_r10_report_lists_only_candidates_with_a_deviation(exam, cli, tmp_path):
    """R2, R4, R6–R10: one row per deviating candidate with what deviated; the on-time and
    the plain candidates are not listed."""
    out = tmp_path / "report.csv"
    result = cli("report", CODE, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert f"Wrote the incident report of {CODE} to {out} (csv)" in result.stdout
    candidates, notices = read_csv(out.read_bytes())
    assert tuple(candidates[0]) == CANDIDATE_HEADER
    rows = by_candidate(candidates)
    assert sorted(rows) == ["10002", "10003", "10004", "10005", "10006"]

    assert rows["10002"]["Extra time (min)"] == "30"
    assert rows["10002"]["Delivered at"] == "2026-12-01 13:45"
    assert rows["10002"]["After the ordinary end (min)"] == "30"

    incident = rows["10003"]
    assert incident["Incident time (min)"] == "0"
    assert incident["Incident time changes"].splitlines() == [
        f"2026-12-01 10:00 add 0 → 15 min by {SUPPORT}: network outage",
        f"2026-12-01 10:30 subtract 15 → 0 min by {SUPPORT}: given by mistake",
    ]

    # R2: the individual deadline replaces the ordinary end.
    assert rows["10004"]["Individual deadline"] == "2026-12-03 13:00"
    assert rows["10004"]["End time"] == "2026-12-03 13:00"

    # R6, R9: reopened in 30 min at 13:30, delivered automatically at 14:00.
    reopened = rows["10005"]["New delivery"]
    assert reopened.startswith(f"in until 2026-12-01 14:00, opened 2026-12-01 13:30 by {SUPPORT}")
    assert "upload failed" in reopened
    assert "closed 2026-12-01 14:00 by examdesk (delivered automatically at its deadline)" in (
        reopened
    )
    assert rows["10005"]["After the ordinary end (min)"] == "45"

    # R10: the file, its size and hash, who delivered it.
    digest = hashlib.sha256(FILE_BYTES).hexdigest()
    assert rows["10006"]["Delivered for the candidate"] == (
        f"svar 10006 æøå.pdf ({len(FILE_BYTES)} bytes, sha256 {digest}) by {SUPPORT} "
        "at 2026-12-01 13:50"
    )
    assert rows["10006"]["After the ordinary end (min)"] == "35"
    # Delivered at the ordinary end, on the minute: not late.
    assert rows["10003"]["After the ordinary end (min)"] == ""

    assert tuple(notices[0]) == NOTICE_HEADER
    (notice,) = [dict(zip(notices[0], row, strict=True)) for row in notices[1:]]
    assert notice["In-app"] == "7" and notice["Read"] == "1"
    assert notice["SMS delivered"] == "6" and notice["SMS failed"] == "1"
    assert notice["SMS pending"] == "0" and notice["E-mail delivered"] == "0"
    # A text Excel would take for a formula is kept as text.
    assert notice["Text"] == "'" + NOTICE


def test_report_xlsx_reads_back_with_dates_and_no_formulas(exam, cli, tmp_path):
    out = tmp_path / "report.xlsx"
    result = cli("report", CODE, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "(xlsx)" in result.stdout
    book = load_workbook(out)
    assert book.sheetnames == ["Candidates", "Notices"]
    sheet = book["Candidates"]
    header = [c.value for c in sheet[1]]
    assert tuple(header) == CANDIDATE_HEADER
    rows = {r[1]: dict(zip(header, r, strict=True)) for r in sheet.iter_rows(2, values_only=True)}
    assert sorted(rows) == ["10002", "10003", "10004", "10005", "10006"]
    assert rows["10002"]["Extra time (min)"] == 30
    assert rows["10002"]["Delivered at"] == datetime(2026, 12, 1, 13, 45)
    assert rows["10004"]["Individual deadline"] == datetime(2026, 12, 3, 13, 0)
    assert rows["10005"]["After the ordinary end (min)"] == 45
    assert "network outage" in rows["10003"]["Incident time changes"]
    notices = book["Notices"]
    notice_header = [c.value for c in notices[1]]
    assert tuple(notice_header) == NOTICE_HEADER
    text_cell = notices.cell(row=2, column=notice_header.index("Text") + 1)
    assert text_cell.value == NOTICE and text_cell.data_type == "s"
    values = dict(zip(notice_header, [c.value for c in notices[2]], strict=True))
    assert values["SMS delivered"] == 6 and values["Read"] == 1


def test_report_json_goes_to_standard_output_for_scripts(exam, cli):
    result = cli("report", CODE, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["test"] == CODE
    assert data["ordinary_end"] == "2026-12-01T13:15:00+01:00"
    assert data["counts"] == {
        "candidates": 7,
        "listed": 5,
        "extra": 1,
        "incident": 1,
        "own_end": 1,
        "reopened": 1,
        "delivered_for": 1,
        "after_ordinary_end": 3,
    }
    rows = {row["candidate"]: row for row in data["candidates"]}
    assert rows["10005"]["reopenings"] == [
        {
            "mode": "in",
            "deadline": "2026-12-01T14:00:00+01:00",
            "opened_at": "2026-12-01T13:30:00+01:00",
            "opened_by": SUPPORT,
            "reason": "upload failed",
            "closed_at": "2026-12-01T14:00:00+01:00",
            "closed_by": SYSTEM_ACTOR,
            "closed": "automatic",
        }
    ]
    assert [c["operation"] for c in rows["10003"]["incident_changes"]] == ["add", "subtract"]
    assert rows["10006"]["deliveries"][0]["sha256"] == hashlib.sha256(FILE_BYTES).hexdigest()
    (notice,) = data["notices"]
    assert notice["inapp"] == 7 and notice["read"] == 1
    assert notice["sms"]["delivered"] == 6 and notice["sms"]["failed"] == 1
    # No contact data in a report.
    assert "4741234567" not in result.stdout


def test_report_refuses_xlsx_to_the_terminal_and_unknown_tests(exam, cli):
    xlsx = cli("report", CODE, "--format", "xlsx")
    assert xlsx.returncode == 1 and "--output" in xlsx.stderr and "Traceback" not in xlsx.stderr
    unknown = cli("report", "NOPE-1", "--format", "json")
    assert unknown.returncode == 1 and "There is no test NOPE-1" in unknown.stderr


def test_r15_exam_report_in_slack_is_a_summary_for_support_and_the_teacher(exam):
    """R15: support and the test's teacher get the summary; others are refused."""
    reply = exam.run(f"/exam {CODE} report", actor=TEACHER)
    assert reply.ok, reply.text
    assert reply.kind == "report"
    lines = reply.text.splitlines()
    assert lines[0] == (
        f"Incident report of {CODE}: 5 of 7 candidates with a deviation "
        "(ordinary end 2026-12-01 13:15 CET)"
    )
    assert "extra time 1; incident time 1; individual end 1; new delivery 1" in lines[1]
    assert "delivered after the ordinary end 3" in lines[1]
    assert (
        "• 10005: new delivery in until 2026-12-01 14:00 CET (automatic); delivered "
        "2026-12-01 14:00 CET, 45 min after the ordinary end"
    ) in lines
    assert "• 10003: incident 0 min (2 changes)" in lines
    (notice,) = [line for line in lines if line.startswith("Notice #")]
    assert "in-app 7, read 1; SMS 6 delivered, 1 failed" in notice
    assert f"`examdesk report {CODE} --format xlsx --output {CODE}.xlsx`" in reply.text
    assert exam.run(f"/exam {CODE} report").ok
    exam.add_staff(OTHER_TEACHER, "teacher")
    other = exam.run(f"/exam {CODE} report", actor=OTHER_TEACHER)
    assert not other.ok and "not registered as a teacher of" in other.text
    assert not exam.run(f"/exam {CODE} report", actor=STRANGER).ok


def test_exam_report_cuts_long_lists(world):
    world.add_test(CODE)
    world.add_candidates(CODE, [str(10000 + i) for i in range(25)], extra_minutes=15)
    reply = world.run(f"/exam {CODE} report")
    assert reply.ok, reply.text
    bullets = [line for line in reply.text.splitlines() if line.startswith("• ")]
    assert len(bullets) == 10 and "… and 15 more" in reply.text
    assert "Notices: none sent" in reply.text


def test_report_of_a_test_without_deviations_is_empty_but_well_formed(world, cli):
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001"])
    result = cli("report", CODE)
    assert result.returncode == 0, result.stderr
    candidates, notices = read_csv(result.stdout.encode())
    assert candidates == [list(CANDIDATE_HEADER)]
    assert notices == [list(NOTICE_HEADER)]
    reply = world.run(f"/exam {CODE} report")
    assert "0 of 1 candidates with a deviation" in reply.text


def test_bad_exam_subcommand_names_the_choices(world):
    world.add_test(CODE)
    reply = world.run(f"/exam {CODE} reprot")
    assert not reply.ok and "`refresh` or `report`" in reply.text


def test_exam_report_in_slack_sends_the_csv_to_the_asker_as_a_direct_message(exam, cli):
    """The summary in the reply, and the whole report as a file, through the outbox: the
    same CSV `examdesk report` writes, uploaded into the asker's direct message."""
    from fake_slack import FakeSlack

    from notifications.dispatch import Tuning
    from notifications.outbox import OutboxSender
    from notifications.slack_post import SlackTransport
    from store.models import OutboxMessage

    reply = exam.run(f"/exam {CODE} report", actor=TEACHER)
    assert reply.ok, reply.text
    name = f"{CODE}-incident-report.csv"
    assert f"The whole report ({name}) comes to you as a direct message" in reply.text
    with exam.factory() as s:
        (row,) = s.scalars(select(OutboxMessage)).all()
    assert (row.kind, row.target, row.payload["method"]) == (
        "slack_post",
        TEACHER,
        "files.upload_v2",
    )
    fake = FakeSlack()
    try:
        sender = OutboxSender(
            session_factory=exam.factory,
            transports={"slack_post": SlackTransport(base_url=fake.api_url, token="xoxb-test")},
            worker_id="test-sender",
            tuning=Tuning(),
            skip_locked=exam.factory.kw["bind"].dialect.name == "postgresql",
        )
        assert sender.send_due() == 1
        sender.close()
        (opened,) = fake.of("conversations.open")
        assert opened.body["users"] == TEACHER
        (complete,) = fake.of("files.completeUploadExternal")
        assert complete.body["channel_id"] == "D" + TEACHER[1:]
        (uploaded,) = fake.uploads.values()
    finally:
        fake.close()
    written = cli("report", CODE)
    assert written.returncode == 0, written.stderr
    assert read_csv(uploaded) == read_csv(written.stdout.encode("utf-8"))
    with exam.factory() as s:
        assert s.get(OutboxMessage, row.id).status == "sent"
