"""Teachers' error reports listed and handled from the terminal as from Slack (R12–R14), and
honest previews when SMS is not configured (issue 17 items 2 and 3)."""

from __future__ import annotations

import json

import pytest
from conftest import SUPPORT, TEACHER
from sqlalchemy import select

from bot.slack.views.notices import report_blocks
from commands import question_error
from commands.home import build
from notifications.channels import Outside
from store.models import Notice, QuestionErrorReport

CODE = "TDT4100-2026H"
LOGGED = "SMS: not configured — will only be written to the log"


@pytest.fixture
def reported(world):
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023", "10024"])
    reply = world.run(f"/question-error {CODE} Task 3b: n = 10, not n = 100.", actor=TEACHER)
    assert reply.ok, reply.text
    # Its id, as the database gave it (PostgreSQL's sequences do not start again per test).
    world.report_id = reply.data["report_id"]
    return world


def test_r12_open_reports_on_exam_overview_and_support_home(reported):
    rid = reported.report_id
    overview = reported.run(f"/exam {CODE}")
    assert f"Error reports: 1 open (#{rid} at 2026-12-01 10:00 CET)" in overview.text
    assert [r["id"] for r in overview.data["open_reports"]] == [rid]
    with reported.factory() as s:
        home = build(db_session=s, user_id=SUPPORT, now=reported.now)
    assert [(r.id, r.test, r.state) for r in home.open_reports] == [(rid, CODE, "open")]


def test_r14_reports_listed_sent_edited_and_rejected_from_the_terminal(reported, cli):
    rid = reported.report_id
    listed = cli("reports", CODE, "--json")
    assert listed.returncode == 0, listed.stderr
    (report,) = json.loads(listed.stdout)["reports"]
    assert (report["id"], report["state"], report["reported_by"]) == (rid, "open", TEACHER)
    assert "Task 3b" in cli("reports").stdout

    edited = cli("reports", "--edit", str(rid), "--en", "Task 3b: n = 10.", "--as", SUPPORT)
    assert edited.returncode == 0, edited.stderr
    with reported.factory() as s:
        found = s.get(QuestionErrorReport, rid)
        assert found.text_en == "Task 3b: n = 10."

    ask = cli("reports", "--send", str(rid), "--as", SUPPORT)
    assert ask.returncode == 2 and "2 in-app notices, 2 SMS" in ask.stdout
    assert LOGGED in ask.stdout  # no TWILIO_* in the test's environment
    sent = cli("reports", "--send", str(rid), "--as", SUPPORT, "--yes")
    assert sent.returncode == 0, sent.stderr
    with reported.factory() as s:
        assert s.scalars(select(Notice.report_id)).all() == [rid]
    again = cli("reports", "--reject", str(rid), "--as", SUPPORT)
    assert again.returncode == 1 and "already sent" in again.stderr
    assert json.loads(cli("reports", "--json").stdout)["reports"][0]["state"] == "sent"


def test_r15_a_teacher_cannot_reject_from_the_terminal(reported, cli):
    rid = reported.report_id
    refused = cli("reports", "--reject", str(rid), "--as", TEACHER)
    assert refused.returncode == 1
    # A reason is bounded as every change's is (R15): refused, and the report stays open.
    for reason, says in (
        ("x" * 501, "The reason is 501 characters long"),
        ("not \u202ean error", "U+202E"),
    ):
        bad = cli("reports", "--reject", str(rid), "--as", SUPPORT, "--reason", reason)
        assert bad.returncode == 1 and says in bad.stderr, bad.stderr
    assert json.loads(cli("reports", "--json").stdout)["reports"][0]["state"] == "open"
    assert (
        cli("reports", "--reject", str(rid), "--as", SUPPORT, "--reason", "not an error").returncode
        == 0
    )
    assert "rejected" in cli("reports", CODE).stdout


def test_r13_notice_preview_says_sms_is_only_logged_when_not_configured(reported, cli):
    preview = cli("run", "--as", SUPPORT, f"/notice {CODE} Oppgave 3b: bruk n = 10.")
    assert preview.returncode == 2 and LOGGED in preview.stdout
    configured = cli(
        "run",
        "--as",
        SUPPORT,
        f"/notice {CODE} Oppgave 3b: bruk n = 10.",
        env={"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "x"},
    )
    assert configured.returncode == 2 and LOGGED not in configured.stdout


def test_r13_report_send_confirm_says_sms_is_only_logged(reported):
    rid = reported.report_id
    with reported.factory() as s:
        ctx = reported.ctx(s)
        ctx = type(ctx)(**{**ctx.__dict__, "outside": Outside(logged=frozenset({"sms"}))})
        report = question_error.show(ctx, report_id=rid)
    send = report_blocks(report)["blocks"][-1]["elements"][0]
    assert LOGGED in send["confirm"]["text"]["text"]
