"""The Slack app through real HTTP: signed requests in, a fake Slack Web API out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import pytest
from conftest import OSLO, STRANGER, SUPPORT, TEACHER, World
from fake_slack import FakeSlack
from notifier import running_notifier
from served import serving, slack_settings
from slack_signing import SlackSender, signed_headers, slash_command
from sqlalchemy import func, select

from bot.config import Settings
from bot.runtime.server import Wiring
from commands.runner import execute
from store import clock
from store.models import Candidate, Change, Confirmation, Reopening

SUPPORT_2 = "U0SUPPORT2"
CHANNEL = "C0SUPPORT"


@dataclass
class Served:
    url: str
    slack: SlackSender
    fake: FakeSlack
    wiring: Wiring


def local(moment: datetime) -> str:
    return moment.astimezone(OSLO).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def served(engine, session_factory, fake) -> Iterator[Served]:
    settings = slack_settings(fake, slack_support_channel=CHANNEL)
    with (
        serving(settings, engine=engine, session_factory=session_factory) as (wiring, url),
        running_notifier(settings, session_factory),
    ):
        sender = SlackSender(url)
        yield Served(url=url, slack=sender, fake=fake, wiring=wiring)
        sender.close()


@pytest.fixture
def exam(world: World) -> World:
    """A school exam running now (real clock: the server uses it), candidates 101–103."""
    now = clock.now().astimezone(OSLO).replace(second=0, microsecond=0)
    world.now = now
    world.add_test(
        "TDT4100-2026H", start=local(now - timedelta(hours=1)), end=local(now + timedelta(hours=3))
    )
    world.add_candidates("TDT4100-2026H", [101, 102, 103], extra_minutes=0)
    world.add_staff(SUPPORT_2, "support")
    return world


def ephemeral(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response_type"] == "ephemeral"
    return body


def button(body: dict, action_id: str) -> dict:
    for block in body["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no {action_id} button in {body['blocks']}")


def answers(fake: FakeSlack, *urls: str) -> list[dict]:
    """What the app posted to each response_url, in the order of ``urls``."""
    posted = {c.path: c.body for c in fake.wait_for("response_url", len(urls))}
    return [posted[url.removeprefix(fake.base_url)] for url in urls]


def incident(world: World, number: str) -> int:
    return world.candidate("TDT4100-2026H", number).incident_minutes


# ---------------------------------------------------------------- signatures


def test_forged_signature_is_rejected_and_changes_nothing(served, exam):
    body = slash_command(
        "/incident-time", "TDT4100-2026H 101 add 15 x", user=SUPPORT, response_url="http://x"
    )
    headers = signed_headers(
        body, secret="not-the-secret", content_type="application/x-www-form-urlencoded"
    )
    response = served.slack.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 401
    assert incident(exam, "101") == 0


def test_timestamp_older_than_five_minutes_is_rejected(served, exam):
    body = slash_command(
        "/incident-time", "TDT4100-2026H 101 add 15 x", user=SUPPORT, response_url="http://x"
    )
    response = served.slack.post(body, timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 401
    assert incident(exam, "101") == 0


def test_url_verification_answers_the_challenge(served):
    body = json.dumps(
        {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV", "type": "url_verification"}
    )
    response = served.slack.post(body, json_body=True)
    assert response.status_code == 200
    assert response.json()["challenge"] == "3eZbrw1aBm2rZgRNFdxV"


# ---------------------------------------------------------------- commands


def test_candidate_card_has_the_same_text_as_the_cli_and_shows_how_the_deadline_is_made_up(
    served, exam
):
    body = ephemeral(
        served.slack.command(
            "/candidate", "TDT4100-2026H 101", user=SUPPORT, response_url=served.fake.response_url()
        )
    )
    same = execute(
        session_factory=exam.factory,
        actor=SUPPORT,
        command_line="/candidate TDT4100-2026H 101",
        tz=OSLO,
        now=clock.now(),
    )
    assert body["text"] == same.text
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Candidate 101 · TDT4100-2026H"},
    }
    shown = json.dumps(body["blocks"])
    for part in ("ordinary end", "upload allowance", "extra time", "incident time", "end time"):
        assert part in shown
    assert "started" in json.dumps(body["blocks"][1])


def test_incident_time_receipt_and_change_log_post_r4(served, exam):
    body = ephemeral(
        served.slack.command(
            "/incident-time",
            "TDT4100-2026H 101 add 15 network outage <!channel>",
            user=SUPPORT,
            response_url=served.fake.response_url(),
        )
    )
    assert body["blocks"][0]["text"]["text"].startswith(":white_check_mark: Incident time")
    assert incident(exam, "101") == 15
    (post,) = served.fake.wait_for("chat.postMessage")
    assert post.body["channel"] == CHANNEL
    assert post.headers["Authorization"] == "Bearer xoxb-test-token"
    log = post.body["text"]
    assert f"<@{SUPPORT}>" in log and "add 15 min" in log and "candidate 101" in log
    assert "network outage" in log and "latest end time now" in log
    # What users typed cannot ping the channel from the change log.
    assert "<!channel>" not in json.dumps(post.body["blocks"])


def test_refusal_explains_itself_r5(served, world):
    now = clock.now().astimezone(OSLO).replace(second=0, microsecond=0)
    world.add_test(
        "OLD-1", start=local(now - timedelta(hours=5)), end=local(now - timedelta(hours=2))
    )
    world.add_candidates("OLD-1", [7])
    response = served.slack.command(
        "/incident-time",
        "OLD-1 7 add 15 test reason",
        user=SUPPORT,
        response_url=served.fake.response_url(),
    )
    body = ephemeral(response)
    assert body["blocks"][0]["text"]["text"].startswith(":warning:")
    assert "has passed" in body["text"] and "/reopen OLD-1" in body["text"]
    assert served.fake.of("chat.postMessage") == []


def test_r15_user_without_role_is_told_whom_to_ask(served, exam):
    body = ephemeral(
        served.slack.command(
            "/candidate",
            "TDT4100-2026H 101",
            user=STRANGER,
            response_url=served.fake.response_url(),
        )
    )
    assert f"<@{SUPPORT}>" in body["text"]
    assert f"<@{SUPPORT}>" in body["blocks"][0]["text"]["text"]  # a mention, not escaped


def test_r15_teacher_cannot_change_incident_time(served, exam):
    body = ephemeral(
        served.slack.command(
            "/incident-time",
            "TDT4100-2026H 101 add 5 test reason",
            user=TEACHER,
            response_url="http://x",
        )
    )
    assert "Only exam support staff" in body["text"]
    assert incident(exam, "101") == 0


def test_usage_is_shown_as_code(served, exam):
    body = ephemeral(served.slack.command("/reopen", "help", user=SUPPORT, response_url="http://x"))
    assert body["text"].startswith("Usage: /reopen")
    assert body["blocks"][0]["text"]["text"].startswith("```Usage: /reopen")


def test_malformed_command_gets_message_and_usage(served, exam):
    body = ephemeral(
        # Typed bare it opens its form (tests/test_forms.py); with too few parts, the usage.
        served.slack.command(
            "/incident-time", "TDT4100-2026H", user=SUPPORT, response_url="http://x"
        )
    )
    texts = [b["text"]["text"] for b in body["blocks"]]
    assert texts[0].startswith(":warning: Some parts are missing")
    assert texts[1].startswith("```Usage: /incident-time")


def test_exam_overview_blocks(served, exam):
    exam.run("/incident-time TDT4100-2026H 102 add 20 power cut")
    body = ephemeral(
        served.slack.command("/exam", "TDT4100-2026H", user=TEACHER, response_url="http://x")
    )
    assert body["blocks"][0]["text"]["text"].startswith("TDT4100-2026H — ")
    fields = [f["text"] for f in body["blocks"][2]["fields"]]
    assert "*Candidates*\n3" in fields and "*Started*\n3" in fields
    assert "*Incident time:* 1 — 102 (20 min)" in json.dumps(body["blocks"], ensure_ascii=False)


def test_every_manifest_command_is_answered(served, exam):
    """Each command in manifest.yml reaches a listener (Bolt answers 404 when none matches)."""
    from test_manifest import manifest_commands

    for name in manifest_commands():
        response = served.slack.command(
            name, "help", user=SUPPORT, response_url=served.fake.response_url()
        )
        assert response.status_code == 200, name


# ---------------------------------------------------------------- confirmations


def _ask_all(served: Served, minutes: int = 10) -> dict:
    return ephemeral(
        served.slack.command(
            "/incident-time",
            f"TDT4100-2026H all add {minutes} fire alarm",
            user=SUPPORT,
            response_url=served.fake.response_url(),
        )
    )


def test_all_asks_first_and_changes_nothing_until_confirmed(served, exam):
    body = _ask_all(served)
    confirm = button(body, "examdesk_confirm")
    assert confirm["confirm"]["title"]["text"] == "Are you sure?"
    assert "all 3 candidates" in confirm["confirm"]["text"]["text"]
    assert [incident(exam, n) for n in ("101", "102", "103")] == [0, 0, 0]
    with exam.factory() as s:
        row = s.get(Confirmation, confirm["value"])
        assert row.command == "/incident-time TDT4100-2026H all add 10 fire alarm"
        assert row.used_at is None


def test_confirm_pressed_twice_applies_once(served, exam):
    token = button(_ask_all(served), "examdesk_confirm")["value"]
    first_url, second_url = served.fake.response_url(), served.fake.response_url()
    for url in (first_url, second_url):
        response = served.slack.click("examdesk_confirm", token, user=SUPPORT, response_url=url)
        assert response.status_code == 200 and response.text == ""
    done, again = answers(served.fake, first_url, second_url)
    assert done["replace_original"] is True and done["text"].startswith("Incident time for all 3")
    assert again["replace_original"] is False and "already applied" in again["text"]
    assert [incident(exam, n) for n in ("101", "102", "103")] == [10, 10, 10]
    with exam.factory() as s:
        assert s.scalar(select(func.count()).select_from(Change)) == 1
    (post,) = served.fake.wait_for("chat.postMessage")
    assert "all 3 candidates" in post.body["text"]


def test_confirm_pressed_by_two_people_at_once_applies_once(served, exam):
    token = button(_ask_all(served, 5), "examdesk_confirm")["value"]
    barrier = threading.Barrier(2)
    results = []

    def press(user: str) -> None:
        barrier.wait()
        results.append(
            served.slack.click(
                "examdesk_confirm", token, user=user, response_url=served.fake.response_url()
            ).status_code
        )

    threads = [threading.Thread(target=press, args=(u,)) for u in (SUPPORT, SUPPORT_2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200, 200]
    texts = sorted(c.body["text"] for c in served.fake.wait_for("response_url", 2))
    assert sum("already applied" in t for t in texts) == 1
    assert [incident(exam, n) for n in ("101", "102", "103")] == [5, 5, 5]
    with exam.factory() as s:
        row = s.get(Confirmation, token)
        assert row.used_by in (SUPPORT, SUPPORT_2)


def test_r15_confirm_click_rechecks_the_clicking_users_role(served, exam):
    token = button(_ask_all(served), "examdesk_confirm")["value"]
    served.slack.click(
        "examdesk_confirm", token, user=TEACHER, response_url=served.fake.response_url()
    )
    (refused,) = served.fake.wait_for("response_url")
    assert "Only exam support staff" in refused.body["text"]
    assert [incident(exam, n) for n in ("101", "102", "103")] == [0, 0, 0]
    # A refused press does not use the button up: support can still confirm it.
    served.slack.click(
        "examdesk_confirm", token, user=SUPPORT, response_url=served.fake.response_url()
    )
    served.fake.wait_for("response_url", 2)
    assert [incident(exam, n) for n in ("101", "102", "103")] == [10, 10, 10]


def test_reopen_no_limit_is_confirmed_then_applied_r6(served, exam):
    body = ephemeral(
        served.slack.command(
            "/reopen",
            "TDT4100-2026H 102 no-limit lost connection",
            user=SUPPORT,
            response_url=served.fake.response_url(),
        )
    )
    token = button(body, "examdesk_confirm")["value"]
    with exam.factory() as s:
        assert s.scalar(select(func.count()).select_from(Reopening)) == 0
    served.slack.click(
        "examdesk_confirm", token, user=SUPPORT, response_url=served.fake.response_url()
    )
    (done,) = served.fake.wait_for("response_url")
    assert "open for new delivery (no-limit)" in done.body["text"]
    with exam.factory() as s:
        reopening = s.scalars(select(Reopening)).one()
        assert reopening.mode == "no-limit" and reopening.deadline is None
    (post,) = served.fake.wait_for("chat.postMessage")
    assert "reopened TDT4100-2026H candidate 102 (no-limit)" in post.body["text"]


def test_cancel_uses_the_button_up_without_changing_anything(served, exam):
    token = button(_ask_all(served), "examdesk_cancel")["value"]
    first, second = served.fake.response_url(), served.fake.response_url()
    served.slack.click("examdesk_cancel", token, user=SUPPORT, response_url=first)
    served.slack.click("examdesk_confirm", token, user=SUPPORT, response_url=second)
    cancelled, late = answers(served.fake, first, second)
    assert cancelled["text"] == "Cancelled. Nothing was changed."
    assert "already cancelled" in late["text"]
    assert [incident(exam, n) for n in ("101", "102", "103")] == [0, 0, 0]


def test_unknown_confirmation_token_is_refused(served, exam):
    served.slack.click(
        "examdesk_confirm", "made-up", user=SUPPORT, response_url=served.fake.response_url()
    )
    (answer,) = served.fake.wait_for("response_url")
    assert "unknown" in answer.body["text"]


# ---------------------------------------------------------------- App Home, errors, health


def test_app_home_for_support_shows_running_tests_open_deliveries_and_changes(served, exam):
    exam.run("/incident-time TDT4100-2026H 101 add 15 network outage")
    exam.run("/reopen TDT4100-2026H 103 until-close upload failed")
    response = served.slack.event(
        {"type": "app_home_opened", "user": SUPPORT, "channel": "D1", "tab": "home"}
    )
    assert response.status_code == 200
    (publish,) = served.fake.wait_for("views.publish")
    assert publish.body["user_id"] == SUPPORT
    view = json.dumps(publish.body["view"], ensure_ascii=False)
    assert publish.body["view"]["type"] == "home"
    assert "Running now" in view and "TDT4100-2026H" in view and "3 started" in view
    assert "TDT4100-2026H candidate 103 (until-close): until" in view
    assert "incident time add" in view and "network outage" in view


def test_app_home_for_someone_without_a_role_explains_r15(served, exam):
    served.slack.event(
        {"type": "app_home_opened", "user": STRANGER, "channel": "D2", "tab": "home"}
    )
    (publish,) = served.fake.wait_for("views.publish")
    view = json.dumps(publish.body["view"])
    assert "not registered" in view and f"<@{SUPPORT}>" in view
    assert "Running now" not in view


def test_unexpected_error_gets_a_friendly_reply_and_is_logged(served, exam, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("bot.slack.listeners.commands.confirmations.run_offering", broken)
    body = ephemeral(
        served.slack.command("/exam", "TDT4100-2026H", user=SUPPORT, response_url="http://x")
    )
    assert body["text"].startswith("Sorry, something went wrong on our side.")
    reference = body["text"].rsplit("reference ", 1)[1].rstrip(").")
    assert any(
        reference in r.getMessage() and r.exc_info and "database on fire" in str(r.exc_info[1])
        for r in caplog.records
    )


def test_healthz_reports_database_and_slack(served):
    response = served.slack.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "slack": "http",
        "sms": "log",
        "email": "log",
        "outbox": {"pending": 0, "failed": 0},
    }


def test_without_slack_configuration_events_say_what_to_set(engine, session_factory):
    settings = Settings(_env_file=None)
    with serving(settings, engine=engine, session_factory=session_factory) as (wiring, url):
        assert wiring.mode == "off" and wiring.bolt_app is None
        import httpx

        response = httpx.post(f"{url}/slack/events", content="x")
        assert response.status_code == 503
        assert "SLACK_BOT_TOKEN" in response.json()["error"]
        assert httpx.get(f"{url}/healthz").json()["slack"] == "off"


def test_slash_command_body_is_parsed_as_slack_sends_it():
    body = parse_qs(slash_command("/exam", "T a&b", user="U1", response_url="http://r"))
    assert body["text"] == ["T a&b"] and body["command"] == ["/exam"]


def test_candidate_numbers_stay_anonymous_in_the_change_log(served, exam):
    with exam.factory() as s:
        phone = s.scalars(select(Candidate.phone)).first()
    served.slack.command(
        "/incident-time", "TDT4100-2026H 101,102 set 5 power", user=SUPPORT, response_url="http://x"
    )
    (post,) = served.fake.wait_for("chat.postMessage")
    assert phone not in json.dumps(post.body)


def test_notice_is_confirmed_with_its_counts_then_sent_once_r13(served, exam):
    body = ephemeral(
        served.slack.command(
            "/notice",
            "TDT4100-2026H Task 3: read 10 kg as 10 g.",
            user=SUPPORT,
            response_url=served.fake.response_url(),
        )
    )
    confirm = button(body, "examdesk_confirm")
    assert "3 in-app notices, 3 SMS" in body["text"]
    assert confirm["text"]["text"] == "Send to 3 candidates"
    urls = served.fake.response_url(), served.fake.response_url()
    for url in urls:
        served.slack.click("examdesk_confirm", confirm["value"], user=SUPPORT, response_url=url)
    sent, again = (a["text"] for a in answers(served.fake, *urls))
    assert sent.startswith("Notice #") and "3 in-app notices are up" in sent
    assert "already applied" in again
    (post,) = served.fake.wait_for("chat.postMessage")
    assert (
        "sent notice #" in post.body["text"]
        and "3 candidates of TDT4100-2026H" in post.body["text"]
    )
