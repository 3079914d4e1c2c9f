"""Undo: a receipt's change to one or a list of candidates (incident time R4, a reopening
R6) taken back within 15 minutes, as one new change restoring the values before it
(R15), confirmed first; refused after a later change or delivery, and where R5 or R6 no
longer allow the old values."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from conftest import OSLO, STRANGER, SUPPORT, TEACHER, oslo
from dbstate import snapshot
from sqlalchemy import func, select
from test_slack_app import CHANNEL, answers, button, ephemeral, exam, fake, served  # noqa: F401

from bot.slack.views import blocks
from commands import confirmations
from commands.status import candidate_status
from store import clock
from store.models import Candidate, Change, Reopening, Submission
from store.models import Test as ExamTest

CODE = "TDT4100-2026H"


@pytest.fixture
def day(world):
    """School exam 09:00–13:00 with upload (ordinary end 13:15), at 10:00: 101 has 5 min
    incident time, 102 none; 103 delivered already."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["101"], incident_minutes=5)
    world.add_candidates(CODE, ["102"])
    world.add_candidates(CODE, ["103"], status="submitted")
    return world


def minutes(world, *numbers: str) -> list[int]:
    return [world.candidate(CODE, n).incident_minutes for n in numbers]


def changes(world) -> list[Change]:
    with world.factory() as s:
        return list(s.scalars(select(Change).order_by(Change.id)))


def changed(world, command: str) -> int:
    """Run a change; the id its receipt offers to undo."""
    reply = world.run(command, confirmed=True)
    assert reply.ok, reply.text
    return reply.data["change_id"]


def status_of(world, number: str) -> dict:
    with world.factory() as s:
        test = s.scalars(select(ExamTest).where(ExamTest.code == CODE)).one()
        candidate = s.scalars(
            select(Candidate).where(Candidate.test_id == test.id, Candidate.number == number)
        ).one()
        return candidate_status(candidate, test, world.ctx(s).tz)


def refused_unchanged(world, command: str, *needles: str) -> str:
    before = snapshot(world.factory)
    reply = world.run(command, confirmed=True)
    assert not reply.ok and reply.kind == "refusal", reply.text
    for needle in needles:
        assert needle in reply.text
    assert snapshot(world.factory) == before
    return reply.text


# ---------------------------------------------------------------- incident time (R4)


def test_r4_undo_of_add_to_one_asks_first_then_restores_and_records_one_change(day):
    change_id = changed(day, f"/incident-time {CODE} 101 add 15 network outage")
    assert minutes(day, "101") == [20]

    before = snapshot(day.factory)
    preview = day.run(f"/undo {change_id}")
    assert preview.kind == "confirm" and preview.confirm.command == f"/undo {change_id}"
    assert "incident time added for candidate 101" in preview.text
    assert "why: network outage" in preview.text
    assert "• 101: 20 min → 5 min; end time 2026-12-01 13:35 CET → 2026-12-01 13:20 CET" in (
        preview.text
    )
    assert "Nothing is changed until you confirm" in preview.text
    assert snapshot(day.factory) == before

    done = day.run(f"/undo {change_id}", confirmed=True)
    assert done.ok and done.kind == "receipt", done.text
    assert minutes(day, "101") == [5]
    assert "is undone" in done.text and "undo of change" in done.text
    assert "undo_until" not in done.data, "an undo is not offered for undoing again"
    original, undo = changes(day)
    assert (undo.action, undo.actor) == ("incident_time_undo", SUPPORT)
    assert (undo.before, undo.after) == ({"101": 20}, {"101": 5})
    assert undo.reason == f"undo of change {change_id}: network outage"
    assert undo.candidate_id == original.candidate_id is not None
    assert done.data["change_id"] == undo.id and done.data["undoes"] == change_id
    assert done.log == [
        f"<@{SUPPORT}> undid change {change_id} (incident time added for candidate 101 of "
        f"{CODE}): incident time back to 101 5 min; why: undo of change {change_id}: "
        "network outage"
    ]


def test_r4_undo_of_set_for_a_list_restores_each_candidates_own_value(day):
    change_id = changed(day, f"/incident-time {CODE} 101,102 set 30 fire alarm")
    assert minutes(day, "101", "102") == [30, 30]
    done = day.run(f"/undo {change_id}", confirmed=True)
    assert done.ok, done.text
    assert minutes(day, "101", "102") == [5, 0]
    _, undo = changes(day)
    assert (undo.before, undo.after) == ({"101": 30, "102": 30}, {"101": 5, "102": 0})
    assert undo.candidate_id is None and undo.batch is not None
    assert [i["after_minutes"] for i in done.data["items"]] == [5, 0]


def test_r15_undo_shows_in_the_candidates_history(day):
    change_id = changed(day, f"/incident-time {CODE} 101,102 add 10 power cut")
    day.run(f"/undo {change_id}", confirmed=True)
    history = day.run(f"/candidate {CODE} 102 history")
    assert "incident time change undone" in history.text
    assert "incident time 10 min → 0 min" in history.text


def test_undo_is_refused_after_15_minutes_saying_when_the_change_was_made(day):
    change_id = changed(day, f"/incident-time {CODE} 101,102 add 10 power cut")
    day.at("2026-12-01 10:15")
    assert day.run(f"/undo {change_id}").kind == "confirm", "15 minutes on the dot still do"
    day.at("2026-12-01 10:16")
    text = refused_unchanged(
        day,
        f"/undo {change_id}",
        "was made at 2026-12-01 10:00 CET, more than 15 minutes ago",
        "Nothing was changed",
        f"/incident-time {CODE} 101 set 5 reason",
        f"/incident-time {CODE} 102 set 0 reason",
    )
    assert "Traceback" not in text
    assert minutes(day, "101", "102") == [15, 10]


def test_undo_is_refused_after_a_later_change_to_any_of_its_candidates(day):
    first = changed(day, f"/incident-time {CODE} 101,102 add 10 power cut")
    day.at("2026-12-01 10:02")
    second = changed(day, f"/incident-time {CODE} 102 subtract 5 only half")
    refused_unchanged(
        day,
        f"/undo {first}",
        "Candidate 102 changed again after change",
        f"change {second} (incident time subtracted) at 2026-12-01 10:02 CET",
        "Only the latest change can be undone",
    )
    # The latest one can, and then the first one can too.
    assert day.run(f"/undo {second}", confirmed=True).ok
    refused_unchanged(day, f"/undo {first}", "changed again after change")
    assert minutes(day, "101", "102") == [15, 10]


def test_a_change_to_other_candidates_does_not_stand_in_the_way(day):
    first = changed(day, f"/incident-time {CODE} 101 add 10 power cut")
    changed(day, f"/incident-time {CODE} 102 add 5 other room")
    assert day.run(f"/undo {first}", confirmed=True).ok
    assert minutes(day, "101", "102") == [5, 5]


def test_undo_twice_is_refused_saying_it_is_undone_already(day):
    change_id = changed(day, f"/incident-time {CODE} 101 add 15 x")
    undo_id = day.run(f"/undo {change_id}", confirmed=True).data["change_id"]
    refused_unchanged(day, f"/undo {change_id}", f"is undone already: change {undo_id}")
    refused_unchanged(day, f"/undo {undo_id}", "it is an undo itself")
    assert minutes(day, "101") == [5]


def test_r5_undo_of_incident_time_is_refused_after_the_ordinary_end(day):
    day.at("2026-12-01 13:10")
    change_id = changed(day, f"/incident-time {CODE} 101 add 15 network outage")
    day.at("2026-12-01 13:15")
    refused_unchanged(day, f"/undo {change_id}", "extra time can no longer be changed.")
    assert minutes(day, "101") == [20]


def test_r4_undo_of_a_change_to_all_candidates_is_refused(day):
    reply = day.run(f"/incident-time {CODE} all add 10 server down", confirmed=True)
    assert reply.ok and "undo_until" not in reply.data
    (change,) = changes(day)
    refused_unchanged(day, f"/undo {change.id}", "every candidate", f"/incident-time {CODE} all")
    assert minutes(day, "101", "102", "103") == [15, 10, 10]


@pytest.mark.parametrize(
    ("actor", "needle"),
    [(TEACHER, "Only exam support staff may undo"), (STRANGER, "not registered")],
)
def test_r15_only_support_may_undo(day, actor, needle):
    change_id = changed(day, f"/incident-time {CODE} 101 add 15 x")
    before = snapshot(day.factory)
    for confirmed in (False, True):
        reply = day.run(f"/undo {change_id}", actor=actor, confirmed=confirmed)
        assert not reply.ok and needle in reply.text
    assert snapshot(day.factory) == before


def test_another_support_user_may_undo_and_is_recorded_as_the_one_who_did(day):
    day.add_staff("U0SUPPORT2", "support")
    change_id = changed(day, f"/incident-time {CODE} 101 add 15 x")
    assert day.run(f"/undo {change_id}", actor="U0SUPPORT2", confirmed=True).ok
    assert changes(day)[-1].actor == "U0SUPPORT2"


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("/undo", "Give the number of one change"),
        ("/undo 1 2", "Give the number of one change"),
        ("/undo abc", "'abc' is not the number of a change"),
        ("/undo 0", "is not the number of a change"),
        ("/undo 99999999999999999999999", "is not the number of a change"),
        ("/undo 4242", "There is no change 4242"),
    ],
)
def test_bad_undo_is_refused_clearly(day, command, needle):
    refused_unchanged(day, command, needle)


def test_only_incident_time_and_reopenings_are_undone(day):
    day.at("2026-12-01 13:30")
    changed(day, f"/reopen {CODE} 103 in 30m upload failed")
    day.run(f"/reopen {CODE} 103 close current", confirmed=True)
    close = changes(day)[-1]
    refused_unchanged(day, f"/undo {close.id}", "a delivery stays")


def test_double_confirm_of_an_undo_applies_once(day):
    change_id = changed(day, f"/incident-time {CODE} 101 add 15 x")
    preview = confirmations.run_offering(
        session_factory=day.factory,
        actor=SUPPORT,
        command_line=f"/undo {change_id}",
        tz=OSLO,
        now=day.now,
    )
    token = preview.confirm.token
    results = [
        confirmations.apply(
            session_factory=day.factory, token=token, actor=SUPPORT, tz=OSLO, now=now
        )
        for now in (day.now, day.now)
    ]
    assert results[0].ok and "already applied" in results[1].text
    # A second preview of the same undo, confirmed after the first: refused, not applied.
    second = day.run(f"/undo {change_id}", confirmed=True)
    assert not second.ok and "undone already" in second.text
    assert minutes(day, "101") == [5]
    assert [c.action for c in changes(day)] == ["incident_time_add", "incident_time_undo"]


def test_two_undos_of_one_change_at_once_apply_once(day):
    """Two people confirm their own previews at the same moment: the candidates' row locks
    queue them, and the second sees the first's record."""
    day.add_staff("U0SUPPORT2", "support")
    change_id = changed(day, f"/incident-time {CODE} 101,102 add 15 x")
    barrier = threading.Barrier(2)
    replies = []

    def undo(actor: str) -> None:
        barrier.wait()
        replies.append(day.run(f"/undo {change_id}", actor=actor, confirmed=True))

    threads = [threading.Thread(target=undo, args=(a,)) for a in (SUPPORT, "U0SUPPORT2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.ok for r in replies) == [False, True]
    assert "undone already" in next(r.text for r in replies if not r.ok)
    assert minutes(day, "101", "102") == [5, 0]
    assert [c.action for c in changes(day)] == ["incident_time_add", "incident_time_undo"]


# ---------------------------------------------------------------- reopenings (R6–R8)


def test_r8_undo_of_an_opening_ends_it_without_a_delivery(day):
    """The reopening ends with nothing delivered (not R8's close): status back, the answer
    delivered before stands, no new submission."""
    day.at("2026-12-01 13:30")
    change_id = changed(day, f"/reopen {CODE} 103 in 30m upload failed")
    assert status_of(day, "103")["new_delivery"] is not None
    preview = day.run(f"/undo {change_id}")
    assert "would end without a delivery" in preview.text
    assert "After the undo: submitted, not open for new delivery" in preview.text

    done = day.run(f"/undo {change_id}", confirmed=True)
    assert done.ok, done.text
    status = status_of(day, "103")
    assert status["status"] == "submitted" and status["new_delivery"] is None
    assert status["deadline"] == "2026-12-01T13:15:00+01:00"
    with day.factory() as s:
        assert s.scalar(select(func.count()).select_from(Submission)) == 0
        reopening = s.scalars(select(Reopening)).one()
        assert reopening.closed_at == oslo("2026-12-01 13:30")
        assert reopening.close_choice == "undone"
    undo = changes(day)[-1]
    assert undo.action == "reopen_undo" and undo.before["new_delivery"]["mode"] == "in"
    assert undo.after == {
        "status": "submitted",
        "new_delivery": None,
        "deadline": "2026-12-01T13:15:00+01:00",
    }
    # Nothing is left to close, and it can be opened again.
    assert not day.run(f"/reopen {CODE} 103 close current").ok
    assert day.run(f"/reopen {CODE} 103 in 20m again").ok


def test_r6_undo_of_an_opening_before_the_ordinary_end_gives_back_the_status(day):
    change_id = changed(day, f"/reopen {CODE} 102 until-close lost connection")
    assert day.run(f"/undo {change_id}", confirmed=True).ok
    status = status_of(day, "102")
    assert status["status"] == "started" and status["new_delivery"] is None


def test_r6_undo_of_a_changed_reopening_puts_mode_and_deadline_back(day):
    day.at("2026-12-01 13:30")
    changed(day, f"/reopen {CODE} 103 in 30m upload failed")
    day.at("2026-12-01 13:35")
    second = changed(day, f"/reopen {CODE} 103 at 15:00 wrong file")
    assert status_of(day, "103")["new_delivery"]["mode"] == "at"
    done = day.run(f"/undo {second}", confirmed=True)
    assert done.ok, done.text
    assert status_of(day, "103")["new_delivery"] == {
        "mode": "in",
        "deadline": "2026-12-01T14:00:00+01:00",
    }
    with day.factory() as s:
        reopening = s.scalars(select(Reopening)).one()
        assert reopening.closed_at is None and reopening.reason == "upload failed"
        assert reopening.opened_at == oslo("2026-12-01 13:30")


def test_r6_undo_is_refused_when_the_deadline_it_would_bring_back_has_passed(day):
    day.at("2026-12-01 13:30")
    changed(day, f"/reopen {CODE} 103 at 13:40 upload failed")
    day.at("2026-12-01 13:38")
    second = changed(day, f"/reopen {CODE} 103 at 14:30 more time")
    day.at("2026-12-01 13:41")
    refused_unchanged(day, f"/undo {second}", "2026-12-01 13:40 CET) has passed")


def test_r6_undo_of_a_reopening_after_the_candidate_delivered_is_refused(day):
    day.at("2026-12-01 13:30")
    change_id = changed(day, f"/reopen {CODE} 103 in 30m upload failed")
    day.at("2026-12-01 13:35")
    with day.factory.begin() as s:
        candidate = s.scalars(select(Candidate).where(Candidate.number == "103")).one()
        s.add(Submission(candidate_id=candidate.id, at=day.now, source="candidate", by="103"))
    refused_unchanged(
        day, f"/undo {change_id}", "Candidate 103 delivered at 2026-12-01 13:35 CET", "stays"
    )


def test_r8_undo_of_a_reopening_that_was_closed_since_is_refused(day):
    day.at("2026-12-01 13:30")
    change_id = changed(day, f"/reopen {CODE} 103 in 30m upload failed")
    day.run(f"/reopen {CODE} 103 close reverted", confirmed=True)
    refused_unchanged(day, f"/undo {change_id}", "earlier answer delivered")


# ---------------------------------------------------------------- examdesk run


def test_examdesk_run_prints_how_to_undo_and_undoes_with_yes(day, cli):
    done = cli("run", "--as", SUPPORT, f"/incident-time {CODE} 101 add 15 outage")
    assert done.returncode == 0, done.stderr
    hint = re.search(r'To undo it until .*: examdesk run --as \S+ --yes "/undo (\d+)"', done.stdout)
    assert hint, done.stdout
    change_id = hint.group(1)

    ask = cli("run", "--as", SUPPORT, f"/undo {change_id}")
    assert ask.returncode == 2, ask.stderr
    assert "20 min → 5 min" in ask.stdout and "--yes" in ask.stdout
    assert minutes(day, "101") == [20]

    yes = cli("run", "--as", SUPPORT, "--yes", f"/undo {change_id}")
    assert yes.returncode == 0, yes.stderr
    assert "is undone" in yes.stdout and "To undo" not in yes.stdout
    assert minutes(day, "101") == [5]

    again = cli("run", "--as", SUPPORT, "--yes", f"/undo {change_id}")
    assert again.returncode == 1 and "undone already" in again.stderr


# ---------------------------------------------------------------- Slack


def _receipt(app, text: str) -> dict:
    return ephemeral(
        app.slack.command(
            "/incident-time", text, user=SUPPORT, response_url=app.fake.response_url()
        )
    )


def test_slack_undo_button_previews_then_confirm_undoes(served, exam):  # noqa: F811
    """The receipt's Undo click runs /undo as the clicking user; its Confirm applies it."""
    body = _receipt(served, f"{CODE} 101,102 add 15 network outage")
    undo = button(body, blocks.UNDO_ACTION)
    assert undo["text"]["text"] == "Undo"
    assert "Undo is possible until" in str(body["blocks"])
    assert [exam.candidate(CODE, n).incident_minutes for n in ("101", "102")] == [15, 15]

    # Another support user clicks it: the preview comes below the receipt.
    preview_url = served.fake.response_url()
    served.slack.click(
        blocks.UNDO_ACTION, undo["value"], user="U0SUPPORT2", response_url=preview_url
    )
    (preview,) = answers(served.fake, preview_url)
    assert preview["replace_original"] is False
    assert "Incident time would go back" in preview["text"]
    confirm = button(preview, blocks.CONFIRM_ACTION)
    assert [exam.candidate(CODE, n).incident_minutes for n in ("101", "102")] == [15, 15]

    done_url = served.fake.response_url()
    served.slack.click(
        blocks.CONFIRM_ACTION, confirm["value"], user="U0SUPPORT2", response_url=done_url
    )
    done = served.fake.wait_for("response_url", 2)[-1].body
    assert done["replace_original"] is True and "is undone" in done["text"]
    assert blocks.UNDO_ACTION not in str(done["blocks"])
    assert [exam.candidate(CODE, n).incident_minutes for n in ("101", "102")] == [0, 0]
    logs = served.fake.wait_for("chat.postMessage", 2)
    assert logs[-1].body["channel"] == CHANNEL
    assert "<@U0SUPPORT2> undid change" in logs[-1].body["text"]


def test_slack_receipt_of_a_change_to_all_has_no_undo_button(served, exam):  # noqa: F811
    body = _receipt(served, f"{CODE} all add 10 fire alarm")
    token = button(body, blocks.CONFIRM_ACTION)["value"]
    url = served.fake.response_url()
    served.slack.click(blocks.CONFIRM_ACTION, token, user=SUPPORT, response_url=url)
    (done,) = answers(served.fake, url)
    assert done["text"].startswith("Incident time for all 3")
    assert blocks.UNDO_ACTION not in str(done["blocks"])


def test_slack_undo_click_after_15_minutes_answers_why_not(served, exam):  # noqa: F811
    body = _receipt(served, f"{CODE} 101 add 15 network outage")
    value = button(body, blocks.UNDO_ACTION)["value"]
    exam.now = clock.now() + timedelta(minutes=16)
    url = served.fake.response_url()
    served.slack.click(blocks.UNDO_ACTION, value, user=SUPPORT, response_url=url)
    (refused,) = answers(served.fake, url)
    assert "more than 15 minutes ago" in refused["text"]
    assert exam.candidate(CODE, "101").incident_minutes == 15


def test_r15_slack_undo_click_by_a_teacher_is_refused(served, exam):  # noqa: F811
    value = button(_receipt(served, f"{CODE} 101 add 15 x"), blocks.UNDO_ACTION)["value"]
    url = served.fake.response_url()
    served.slack.click(blocks.UNDO_ACTION, value, user=TEACHER, response_url=url)
    (refused,) = answers(served.fake, url)
    assert "Only exam support staff may undo" in refused["text"]
    assert exam.candidate(CODE, "101").incident_minutes == 15


def test_slack_undo_button_value_is_only_ever_a_change_number(served, exam):  # noqa: F811
    """The click's value is text from outside: anything but one number is refused."""
    url = served.fake.response_url()
    served.slack.click(
        blocks.UNDO_ACTION, f"1 /notice {CODE} hello", user=SUPPORT, response_url=url
    )
    (refused,) = answers(served.fake, url)
    assert "Give the number of one change" in refused["text"]


def test_slack_reopen_receipt_offers_undo(served, exam):  # noqa: F811
    body = ephemeral(
        served.slack.command(
            "/reopen",
            f"{CODE} 102 until-close lost connection",
            user=SUPPORT,
            response_url=served.fake.response_url(),
        )
    )
    value = button(body, blocks.UNDO_ACTION)["value"]
    url = served.fake.response_url()
    served.slack.click(blocks.UNDO_ACTION, value, user=SUPPORT, response_url=url)
    (preview,) = answers(served.fake, url)
    assert "would end without a delivery" in preview["text"]


def test_undo_tells_the_candidate_the_deadline_again(day):
    """After an undo the candidate gets one message with the deadline now, as after a change;
    the change itself told nobody (--quiet)."""
    from store.models import Delivery

    change_id = changed(day, f"/incident-time {CODE} 101 add 20 network down --quiet")
    reply = day.run(f"/undo {change_id}", confirmed=True)
    assert reply.ok, reply.text
    assert "The candidate is told by message" in reply.text
    with day.factory() as s:
        messages = s.scalars(select(Delivery).where(Delivery.notice_id.is_(None))).all()
    assert [(m.channel, m.candidate_id) for m in messages] == [
        ("sms", day.candidate(CODE, "101").id)
    ]
