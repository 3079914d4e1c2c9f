"""The desk: the App Home and `/exam` alone, through signed requests to the real server and
the fake Slack API, on a day the world chooses (never the day the suite runs)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import test_slack_app
from conftest import OSLO, OTHER_TEACHER, STRANGER, SUPPORT, TEACHER, World, oslo
from sqlalchemy import event, select
from test_slack_app import ephemeral

from bot.slack.views.home import home_view
from commands import exam_today, home
from commands.language import speaking
from store.models import Candidate, Delivery, OutboxMessage

# The real server with the fake Slack API, as test_slack_app serves it.
fake, served = test_slack_app.fake, test_slack_app.served
CODE, LATER = "TDT4100-2026H", "MAT1001-2026H"
YESTERDAY, TOMORROW = "OLD1000-2026H", "NEW2000-2026H"
PHONE = "+4741234567"
PAGE = "https://exam.example/notices/s3cretT0ken"


@pytest.fixture
def day(world: World) -> World:
    """Exam day 2026-12-01 at 10:00: one test running, one later, one each side of today."""
    world.at("2026-12-01 10:00")
    world.add_test(CODE, start="2026-12-01 09:00", end="2026-12-01 13:00", teachers=(TEACHER,))
    world.add_test(
        LATER, start="2026-12-01 15:00", end="2026-12-01 19:00", teachers=(OTHER_TEACHER,)
    )
    world.add_test(YESTERDAY, start="2026-11-30 09:00", end="2026-11-30 13:00")
    world.add_test(TOMORROW, start="2026-12-02 09:00", end="2026-12-02 13:00")
    world.add_candidates(CODE, [101, 102, 103])
    world.add_candidates(CODE, [104], status="submitted")
    world.add_candidates(LATER, [201, 202], status="not_started")
    return world


def _published(served, user: str) -> dict[str, Any]:
    response = served.slack.event({"type": "app_home_opened", "user": user, "tab": "home"})
    assert response.status_code == 200
    (publish,) = served.fake.wait_for("views.publish")
    assert publish.body["user_id"] == user
    view = publish.body["view"]
    assert view["type"] == "home"
    return view


def _form_buttons(view: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    for block in view["blocks"]:
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        found += [json.loads(e["value"]) for e in elements if e.get("action_id") == "form_open"]
    return found


def _fail_a_message(world: World) -> None:
    """A message to candidate 102 that did not arrive, and a Slack post the outbox gave up,
    each with an address and a page link in the provider's words."""
    with world.factory.begin() as s:
        candidate = s.scalars(select(Candidate).where(Candidate.number == "102")).one()
        s.add(
            Delivery(
                candidate_id=candidate.id,
                channel="sms",
                body="x",
                address=PHONE,
                status="failed",
                error_code="21614",
                error_message=f"{PHONE} is not a mobile number (page {PAGE})",
                next_attempt_at=world.now,
                updated_at=world.now,
            )
        )
        s.add(
            OutboxMessage(
                kind="slack_post",
                target="C0SUPPORT",
                payload={},
                status="failed",
                error_code="channel_not_found",
                error_message=f"Slack answered 'channel_not_found' for {PHONE}",
                created_at=world.now,
                next_attempt_at=world.now,
                updated_at=world.now,
            )
        )


def test_support_home_is_the_desk_for_today(served, day):
    day.run(f"/incident-time {CODE} 101 add 15 network outage, call {PHONE}")
    day.run(f"/reopen {CODE} 104 until-close upload failed")
    _fail_a_message(day)
    view = _published(served, SUPPORT)
    shown = json.dumps(view, ensure_ascii=False)
    assert "Running now" in shown and "Later today" in shown
    assert "4 candidates" in shown and "0 not started, 3 started, 1 submitted" in shown
    assert "1 open for new delivery" in shown
    # Each of today's tests has the buttons that open the forms for it; other days' none.
    buttons = _form_buttons(view)
    for code in (CODE, LATER):
        assert [b["command"] for b in buttons if b["test"] == code] == [
            "incident-time",
            "reopen",
            "candidate",
            "notice",
        ]
    assert {b["test"] for b in buttons} == {CODE, LATER}
    assert f"Next: *{TOMORROW}*" not in shown  # a test is still to come today
    assert "Messages to candidates that failed today" in shown
    assert f"{CODE} candidate 102: the SMS could not be sent" in shown
    assert "Not sent" in shown and "channel_not_found" in shown
    assert "incident time add" in shown and "network outage" in shown
    # Masked: no phone number, no page link (its token) anywhere on the tab.
    assert PHONE not in shown and "41234567" not in shown and "s3cretT0ken" not in shown


def test_support_home_names_the_next_test_when_none_is_left_today(served, day):
    day.at("2026-12-01 20:00")
    view = _published(served, SUPPORT)
    shown = json.dumps(view, ensure_ascii=False)
    assert "No test is running now." in shown and "No more tests today." in shown
    assert f"Next: *{TOMORROW}* at 2026-12-02 09:00 CET" in shown
    assert _form_buttons(view) == []


def test_r15_teacher_home_shows_their_tests_and_their_reports(served, day):
    reply = day.run(f"/question-error {CODE} Task 3 has no answer", actor=TEACHER)
    assert reply.ok, reply.text
    view = _published(served, TEACHER)
    shown = json.dumps(view, ensure_ascii=False)
    assert CODE in shown and LATER not in shown and YESTERDAY not in shown
    assert "Your error reports" in shown and "*open, waiting for exam support*" in shown
    buttons = _form_buttons(view)
    assert {"command": "question-error", "test": CODE} in buttons
    assert {"command": "question-error", "test": ""} in buttons
    assert all(b["command"] == "question-error" for b in buttons)
    # What is support's stays support's.
    assert "Not sent" not in shown and "Latest changes" not in shown


def test_home_in_norwegian(day):
    with day.factory() as s, speaking("nb"):
        data = home.build(db_session=s, user_id=SUPPORT, now=day.now, tz=OSLO)
        shown = json.dumps(home_view(data, tz=OSLO), ensure_ascii=False)
    assert "Pågår nå" in shown and "Running now" not in shown
    assert "Ekstratid" in shown and "Ny innlevering" in shown  # the form buttons


# ---------------------------------------------------------------- /exam alone


def test_exam_alone_lists_todays_tests_for_support(served, day):
    day.run(f"/reopen {CODE} 104 until-close upload failed")
    body = ephemeral(served.slack.command("/exam", "", user=SUPPORT, response_url="http://x"))
    text = body["text"]
    assert text.startswith("2 tests today (2026-12-01):")
    assert CODE in text and LATER in text and YESTERDAY not in text and TOMORROW not in text
    assert "4 candidates" in text and "0 not started, 3 started, 1 submitted" in text
    assert "1 open for new delivery" in text and "0 notices" in text
    assert f"details: /exam {CODE}" in text
    buttons = _form_buttons(body)
    assert buttons == [{"command": "exam", "test": CODE}, {"command": "exam", "test": LATER}]
    assert "running now" in json.dumps(body["blocks"])


def test_r15_exam_alone_shows_a_teacher_only_their_tests(served, day):
    body = ephemeral(served.slack.command("/exam", "", user=TEACHER, response_url="http://x"))
    assert body["text"].startswith("Your test today (2026-12-01):")
    assert CODE in body["text"] and LATER not in body["text"]
    assert _form_buttons(body) == [{"command": "exam", "test": CODE}]


def test_r15_exam_alone_is_refused_to_someone_without_a_role(served, day):
    body = ephemeral(served.slack.command("/exam", "", user=STRANGER, response_url="http://x"))
    assert "not registered" in body["text"] and CODE not in body["text"]


def test_exam_alone_on_a_day_without_tests_says_so_and_how_to_see_another(served, day):
    day.at("2026-12-05 10:00")
    body = ephemeral(served.slack.command("/exam", "", user=SUPPORT, response_url="http://x"))
    assert body["text"].startswith("No test is on today (2026-12-05).")
    assert "/exam TEST" in body["text"]
    body = ephemeral(served.slack.command("/exam", "", user=TEACHER, response_url="http://x"))
    assert body["text"].startswith("None of your tests is on today (2026-12-05).")


def test_exam_test_shows_its_open_error_reports(served, day):
    reply = day.run(f"/question-error {CODE} Task 3 has no answer", actor=TEACHER)
    report_id = reply.data["report_id"]
    body = ephemeral(served.slack.command("/exam", CODE, user=SUPPORT, response_url="http://x"))
    shown = json.dumps(body["blocks"], ensure_ascii=False)
    assert "*Error reports:* 1 open" in shown and f"#{report_id}" in shown
    assert f"<@{TEACHER}>" in shown


def test_today_is_the_offices_day_across_the_clock_change(world):
    """2026-10-25 has 25 hours in Oslo: a test at 23:30 is that day's, one at 00:30 the
    next day's is not."""
    world.at("2026-10-25 12:00")
    world.add_test("EARLY", start="2026-10-25 00:10", end="2026-10-25 01:00", upload=False)
    world.add_test("LATE", start="2026-10-25 23:30", end="2026-10-26 02:00")
    world.add_test("NEXTDAY", start="2026-10-26 00:30", end="2026-10-26 03:00")
    world.add_test("DAYBEFORE", start="2026-10-24 20:00", end="2026-10-24 23:50", upload=False)
    _day, first, after = exam_today.day_of(world.now, OSLO)
    assert after - first == oslo("2026-10-26 00:00") - oslo("2026-10-25 00:00")
    assert (after - first).total_seconds() == 25 * 3600
    with world.factory() as s:
        found = [t.code for t in exam_today.today(s, now=world.now, tz=OSLO)]
    assert found == ["EARLY", "LATE"]


def test_todays_counts_read_indexes_not_candidates(day):
    """Every query of `/exam` alone and the Home searches by an index: none scans the
    candidates (SQLite's plan; PostgreSQL chooses its own)."""
    day.add_candidates(LATER, range(1000, 3000))
    day.run(f"/reopen {CODE} 104 until-close upload failed")
    engine = day.factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("the plan is SQLite's")
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with day.factory() as s:
            exam_today.today(s, now=day.now, tz=OSLO)
            home.build(db_session=s, user_id=SUPPORT, now=day.now, tz=OSLO)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.connect() as conn:
        for statement, parameters in seen:
            if "candidates" in statement and statement.lstrip().upper().startswith("SELECT"):
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                plans.append(" | ".join(row[-1] for row in rows))
    assert plans
    assert not [p for p in plans if "SCAN candidates" in p], plans
    assert any("COVERING INDEX ix_candidates_test_id_status" in p for p in plans), plans
