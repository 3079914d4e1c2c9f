"""`/question-error` end to end through real signed Slack requests and a fake Slack Web API:
the report lands in the support channel with its buttons, the form opens at once, sending
shows progress and a summary, and the teacher hears in the thread (R12–R15)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from conftest import OSLO, SUPPORT, TEACHER
from fake_slack import Answer, FakeSlack
from fake_twilio import wait_until
from notifier import running_notifier
from served import serving, slack_settings
from slack_signing import TEAM, SlackSender, block_action
from sqlalchemy import func, select

from bot.runtime.server import Wiring
from bot.slack.listeners.question_errors import ProgressReporter, progress_key
from bot.slack.views.notices import notice_progress_message
from commands import question_error
from notifications import outbox
from notifications.dispatch import Tuning
from notifications.progress import progress
from store import clock
from store.models import Candidate, Delivery, Notice, QuestionErrorReport

CHANNEL = "C0SUPPORT"
FAST = Tuning(poll_seconds=0.05, maintain_seconds=0.2)


@contextmanager
def slack_server(engine, session_factory) -> Iterator[tuple[SlackSender, FakeSlack, Wiring]]:
    """`serve`'s web app with a fake Slack Web API and no notifier."""
    fake = FakeSlack()
    settings = slack_settings(
        fake, slack_support_channel=CHANNEL, public_url="https://exams.example.org"
    )
    try:
        with serving(settings, engine=engine, session_factory=session_factory) as (wiring, url):
            sender = SlackSender(url)
            yield sender, fake, wiring
            sender.close()
    finally:
        fake.close()


@pytest.fixture
def slack(engine, session_factory) -> Iterator[tuple[SlackSender, FakeSlack, Wiring]]:
    # The outbox's posts only: the tests send notices with dispatchers of their own.
    with (
        slack_server(engine, session_factory) as (sender, fake, wiring),
        running_notifier(wiring.deps.settings, session_factory, transports={}),
    ):
        yield sender, fake, wiring


def exam_now(world) -> str:
    world.now = clock.now()
    local = world.now.astimezone(OSLO)
    code = world.add_test(
        start=f"{local - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{local + timedelta(hours=3):%Y-%m-%d %H:%M}",
    )
    world.add_candidates(code, ["10001", "10002", "10003"])
    world.add_candidates(code, ["10004"], phone=None)
    return code


def done_notice(world, wiring) -> int:
    """A notice sent by `/notice` and done: its SMS written to the log."""
    code = exam_now(world)
    assert world.run(f"/notice {code} Bruk n = 10.", confirmed=True).ok
    with world.factory() as s:
        notice_id = s.scalar(select(Notice.id))

    def done() -> bool:
        with world.factory() as s:
            state = progress(db_session=s, notice_id=notice_id)
            return state is not None and state.done

    with running_notifier(wiring.deps.settings, world.factory):  # the SMS, written to the log
        wait_until(done, timeout=30)
    return notice_id


def click(sender: SlackSender, action_id: str, value: str, *, user: str, fake: FakeSlack):
    return sender.post(
        block_action(action_id, value, user=user, response_url=fake.response_url(), channel=CHANNEL)
    )


def submit(sender: SlackSender, callback_id: str, values: dict, *, user: str, metadata: str = ""):
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "exams"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0EXAMDESK",
        "token": "deprecated-verification-token",
        "trigger_id": "1.2.trigger",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": metadata,
            "state": {
                "values": {
                    k: {"value": {"type": "plain_text_input", "value": v}}
                    for k, v in values.items()
                }
            },
        },
    }
    return sender.post(urlencode({"payload": json.dumps(payload)}))


def test_r12_r14_report_send_progress_and_thread(world, slack):
    sender, fake, wiring = slack
    code = exam_now(world)
    response = sender.command(
        "/question-error",
        f"{code} Task 3b: n = 10, not n = 100.",
        user=TEACHER,
        response_url=fake.response_url(),
    )
    assert response.status_code == 200
    assert "recorded and sent to exam support" in response.text
    assert "cannot be changed now that the test has started" in response.text

    (post,) = fake.wait_for("chat.postMessage")
    assert post.body["channel"] == CHANNEL
    posted = json.dumps(post.body["blocks"])
    assert "Task 3b: n = 10, not n = 100." in posted
    assert "4 in-app notices, 3 SMS and 0 e-mails" in posted  # the Send button's confirm
    assert all(a in posted for a in ("qe_send", "qe_edit", "qe_reject", "qe_incident_time"))
    wait_until(lambda: _posted_ts(world) is not None, timeout=30)
    report = _report(world)

    # A teacher cannot send (R15); support can, once.
    click(sender, "qe_send", str(report.id), user=TEACHER, fake=fake)
    fake.wait_for("chat.postEphemeral")
    assert "support" in fake.of("chat.postEphemeral")[0].body["text"]
    assert _count(world, Notice) == 0

    assert click(sender, "qe_send", str(report.id), user=SUPPORT, fake=fake).status_code == 200
    wait_until(lambda: _count(world, Notice) == 1, timeout=30)
    with running_notifier(
        wiring.deps.settings, world.factory, on_progress=wiring.deps.notice_progress
    ):
        wait_until(
            lambda: any("done" in json.dumps(c.body) for c in fake.of("chat.update")), timeout=30
        )
    updates = fake.of("chat.update")
    assert all(u.body["ts"] == _posted_ts(world) for u in updates)
    final = json.dumps(updates[-1].body["blocks"])
    assert (
        "in-app 4, read 0" in final and "3 only written to the log" in final and "1 failed" in final
    )
    assert "10004" in final and "no usable number" in final
    threads = [c.body for c in fake.of("chat.postMessage") if c.body.get("thread_ts")]
    wait_until(
        lambda: any("is sent" in c.body.get("text", "") for c in fake.of("chat.postMessage")),
        timeout=30,
    )
    threads = [c.body for c in fake.of("chat.postMessage") if c.body.get("thread_ts")]
    assert any(
        f"<@{TEACHER}>" in t["text"] and "is sending your text" in t["text"] for t in threads
    )
    summary = next(t["text"] for t in threads if "is sent" in t["text"])
    assert "10004" in summary


def test_r12_question_error_without_text_opens_the_form_at_once(world, slack):
    sender, fake, _ = slack
    code = exam_now(world)
    started = time.monotonic()
    response = sender.command(
        "/question-error", code, user=TEACHER, response_url=fake.response_url()
    )
    assert response.status_code == 200 and time.monotonic() - started < 3
    (opened,) = fake.of("views.open")
    assert opened.body["trigger_id"]
    view = opened.body["view"]
    if isinstance(view, str):
        view = json.loads(view)
    assert view["callback_id"] == "qe_report_modal"
    assert {b.get("block_id") for b in view["blocks"]} >= {
        "test",
        "question",
        "text_nb",
        "text_en",
        "minutes",
    }

    bad = submit(
        sender, "qe_report_modal", {"test": code, "text_nb": "", "text_en": ""}, user=TEACHER
    )
    assert bad.status_code == 200 and "errors" in bad.json()
    assert _count(world, QuestionErrorReport) == 0
    for field in ("question", "text_en"):
        values = {"test": code, "question": "Task 3", "text_nb": "", "text_en": "Use n = 10."}
        values[field] = values[field].replace(" ", " \u202e", 1)
        turned = submit(sender, "qe_report_modal", values, user=TEACHER).json()
        assert list(turned["errors"]) == [field] and "U+202E" in turned["errors"][field]
        # The whole refusal, its advice included, not its first 150 characters.
        assert turned["errors"][field].endswith("(paste it as plain text). Nothing was changed.")
    long = {"test": code, "question": "Task 3", "text_nb": "Bruk n = 10.", "text_en": "x" * 2001}
    too_long = submit(sender, "qe_report_modal", long, user=TEACHER).json()
    assert list(too_long["errors"]) == ["text_en"] and "2000" in too_long["errors"]["text_en"]
    assert _count(world, QuestionErrorReport) == 0

    ok = submit(
        sender,
        "qe_report_modal",
        {
            "test": code,
            "question": "Task 3b",
            "text_nb": "Bruk n = 10.",
            "text_en": "Use n = 10.",
            "minutes": "10",
        },
        user=TEACHER,
    )
    assert ok.status_code == 200
    with world.factory() as s:
        report = s.scalars(select(QuestionErrorReport)).one()
    assert (report.question, report.text_nb, report.text_en, report.suggested_minutes) == (
        "Task 3b",
        "Bruk n = 10.",
        "Use n = 10.",
        10,
    )
    fake.wait_for("chat.postMessage", 2)


def test_r14_incident_time_button_gives_everyone_the_suggested_minutes(world, slack):
    sender, fake, _ = slack
    code = exam_now(world)
    submit(
        sender,
        "qe_report_modal",
        {"test": code, "text_nb": "Bruk n = 10.", "minutes": "15"},
        user=TEACHER,
    )
    with world.factory() as s:
        report_id = s.scalar(select(QuestionErrorReport.id))
    click(sender, "qe_incident_time", str(report_id), user=SUPPORT, fake=fake)
    wait_until(lambda: world.candidate(code, "10001").incident_minutes == 15, timeout=30)
    assert {world.candidate(code, n).incident_minutes for n in ("10002", "10003", "10004")} == {15}


def test_reject_marks_the_report_and_tells_the_teacher(world, slack):
    sender, fake, _ = slack
    code = exam_now(world)
    sender.command(
        "/question-error",
        f"{code} Not really an error",
        user=TEACHER,
        response_url=fake.response_url(),
    )
    fake.wait_for("chat.postMessage")
    wait_until(lambda: _posted_ts(world) is not None, timeout=30)
    report_id = _report(world).id
    click(sender, "qe_reject", str(report_id), user=SUPPORT, fake=fake)
    update = fake.wait_for("chat.update")[0]
    assert "Rejected" in json.dumps(update.body["blocks"])
    assert "qe_send" not in json.dumps(update.body["blocks"])
    with world.factory() as s:
        assert s.get(QuestionErrorReport, report_id).state == "rejected"


def test_progress_updates_are_throttled_with_a_trailing_update(world, slack):
    _, fake, wiring = slack
    notice_id = _a_notice_with_its_message(world)
    reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client, every=0.5)
    reporter.client.token = "xoxb-test-token"
    for _ in range(50):
        reporter(notice_id)
    # The trailing update comes from a timer thread half a second on: waited for, not slept
    # for; a third update, were one wrongly planned, would come as soon.
    fake.wait_for("chat.update", 2)
    time.sleep(0.5)
    # One immediate update, then one trailing update for the 49 calls in between.
    assert len(fake.of("chat.update")) == 2 and fake.of("chat.postMessage") == []


def test_r13_two_processes_reporting_at_once_make_one_progress_post(world, slack):
    """A serve and a worker both report a notice that has no Slack message yet (sent by
    `/notice`): one post in the support channel, and it ends showing the last state."""
    _, fake, wiring = slack
    code = exam_now(world)
    assert world.run(f"/notice {code} Bruk n = 10.", confirmed=True).ok
    with world.factory() as s:
        notice_id = s.scalar(select(Notice.id))
    reporters = [ProgressReporter(wiring.deps, wiring.bolt_app.client, every=0.3) for _ in "ab"]
    start = threading.Barrier(len(reporters))

    def report(reporter: ProgressReporter) -> None:
        reporter.client.token = "xoxb-test-token"
        start.wait()
        reporter(notice_id)

    threads = [threading.Thread(target=report, args=(r,)) for r in reporters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    with world.factory() as s:
        expected = notice_progress_message(progress(db_session=s, notice_id=notice_id))

    wait_until(lambda: _notice_ts(world, notice_id) is not None, timeout=30)
    time.sleep(1)  # the outbox's sender polls every 0.05 s here: a second post would be out
    heading = f"Notice #{notice_id} "
    posts = [c.body for c in fake.of("chat.postMessage") if c.body["text"].startswith(heading)]
    assert len(posts) == 1
    assert posts[0]["channel"] == CHANNEL
    ts = _notice_ts(world, notice_id)
    updates = [c.body for c in fake.of("chat.update") if c.body.get("ts") == ts]
    assert (updates or posts)[-1]["text"] == expected["text"]


def _a_notice_with_its_message(world) -> int:
    """A notice sent by `/notice`, its message in the support channel already posted."""
    code = exam_now(world)
    assert world.run(f"/notice {code} Bruk n = 10.", confirmed=True).ok
    with world.factory.begin() as s:
        notice = s.scalars(select(Notice)).one()
        notice.slack_channel, notice.slack_ts = CHANNEL, "1767225600.000100"
        return notice.id


def test_r13_an_update_slack_did_not_take_is_tried_again_until_it_is_shown(world, slack):
    """Slack busy (HTTP 500, then 429 with Retry-After): the message still ends showing the
    notice's state, instead of what the failed update would have replaced."""
    _, fake, wiring = slack
    notice_id = _a_notice_with_its_message(world)
    fake.script(
        "chat.update",
        Answer(500, None),
        Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
    )
    reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client, every=0.1)
    reporter.client.token = "xoxb-test-token"
    reporter(notice_id)
    with world.factory() as s:
        expected = notice_progress_message(progress(db_session=s, notice_id=notice_id))
    (shown,) = fake.wait_for("chat.update", 3)[2:]
    assert shown.status == 200 and shown.body["text"] == expected["text"]
    time.sleep(0.5)
    assert len(fake.of("chat.update")) == 3  # shown: no more tries


def test_an_update_slack_refuses_for_good_is_not_tried_again(world, slack):
    _, fake, wiring = slack
    notice_id = _a_notice_with_its_message(world)
    fake.script("chat.update", Answer(200, {"ok": False, "error": "message_not_found"}))
    reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client, every=0.1)
    reporter.client.token = "xoxb-test-token"
    reporter(notice_id)
    fake.wait_for("chat.update")
    time.sleep(0.8)
    assert len(fake.of("chat.update")) == 1


def _notice_ts(world, notice_id: int) -> str | None:
    """Where the notice's own post landed in Slack, once the outbox has made it."""
    with world.factory() as s:
        return (outbox.result_of(s, progress_key(notice_id)) or {}).get("ts")


def test_an_update_held_back_is_shown_when_the_reporter_closes(world, slack):
    """A process on its way out shows what its timers would have shown later."""
    _, fake, wiring = slack
    notice_id = _a_notice_with_its_message(world)
    reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client, every=60)
    reporter.client.token = "xoxb-test-token"
    reporter(notice_id)
    fake.wait_for("chat.update")
    reporter(notice_id)  # held back for a minute
    assert len(fake.of("chat.update")) == 1
    reporter.close()
    assert len(fake.of("chat.update")) == 2
    assert reporter._pending == {}  # and nothing is planned after


def test_r13_a_notice_summary_is_posted_once_whichever_process_sees_it_done(world, slack):
    """A serve and a worker (or two serves) both see the notice done: one summary."""
    _, fake, wiring = slack
    notice_id = done_notice(world, wiring)
    for _process in range(2):
        reporter = ProgressReporter(wiring.deps, wiring.bolt_app.client)
        reporter.client.token = "xoxb-test-token"
        reporter(notice_id)

    def summaries() -> list[dict]:
        return [c.body for c in fake.of("chat.postMessage") if "is sent" in c.body.get("text", "")]

    wait_until(lambda: summaries(), timeout=30)
    time.sleep(1)  # the outbox's sender polls every 0.05 s here: a second one would be out
    (summary,) = summaries()
    assert summary["thread_ts"] == _notice_ts(world, notice_id)
    assert "10004" in summary["text"]


def _posted_ts(world) -> str | None:
    """Where the report's post landed in Slack, once the outbox has sent it."""
    with world.factory() as s:
        found = s.scalars(select(QuestionErrorReport)).one()
        return (outbox.result_of(s, question_error.report_key(found.id)) or {}).get("ts")


def _report(world) -> QuestionErrorReport:
    with world.factory() as s:
        return s.scalars(select(QuestionErrorReport)).one()


def _count(world, model) -> int:
    with world.factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_candidate_numbers_only_never_phones(world, slack):
    """Slack shows candidates as numbers; phone numbers never appear in the report."""
    sender, fake, _ = slack
    code = exam_now(world)
    sender.command(
        "/question-error", f"{code} Task 1", user=TEACHER, response_url=fake.response_url()
    )
    (post,) = fake.wait_for("chat.postMessage")
    assert "41234567" not in json.dumps(post.body)
    with world.factory() as s:
        assert s.scalar(select(func.count()).select_from(Candidate)) == 4
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
