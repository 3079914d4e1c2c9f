"""The commands' forms end to end, through signed Slack requests to the real server and a
fake Slack Web API: a bare command opens its form, the test picker answers as the user
types (R15), a bad field shows its refusal on that field and changes nothing, and a good
submission runs exactly the command typed (R4, R5, R6, R7, R13)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import OSLO, OTHER_TEACHER, STRANGER, SUPPORT, TEACHER
from fake_slack import FakeSlack
from served import serving, slack_settings
from slack_signing import TEAM, SlackSender, block_action
from sqlalchemy import select

from bot.slack.text import escape
from bot.slack.views import forms
from commands import test_picker
from commands.language import speaking
from store import clock
from store.models import Candidate, Change, Confirmation, Notice, Reopening

CODE = "TDT4100-2026H"


@pytest.fixture
def slack(engine, session_factory) -> Iterator[tuple[SlackSender, FakeSlack]]:
    fake = FakeSlack()
    settings = slack_settings(fake, public_url="https://exams.example.org")
    with serving(settings, engine=engine, session_factory=session_factory) as (_, url):
        sender = SlackSender(url)
        yield sender, fake
        sender.close()
    fake.close()


@pytest.fixture
def exam(world) -> str:
    """A school exam running now (09:00–13:00, it is 10:00) with four candidates."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10001", "10002", "10003", "10004"])
    return CODE


# ---------------------------------------------------------------- Slack's requests


def _post(sender: SlackSender, payload: dict[str, Any]):
    return sender.post(urlencode({"payload": json.dumps(payload)}))


def _user(user: str) -> dict[str, str]:
    return {"id": user, "username": user.lower(), "team_id": TEAM}


def submit(
    sender: SlackSender,
    command: str,
    values: dict[str, str],
    *,
    user: str = SUPPORT,
    response_url: str | None = None,
):
    """A view_submission of ``command``'s form, each value in the shape Slack gives its
    element: the test picker's selected option, a radio's, a text input's value."""
    kinds = {"test": "external_select", "who": "radio", "operation": "radio", "mode": "radio"}
    state: dict[str, dict[str, Any]] = {}
    for block, value in values.items():
        kind = kinds.get(block, "plain_text_input")
        if kind == "plain_text_input":
            state[block] = {"value": {"type": kind, "value": value}}
        else:
            action = forms.TEST_ACTION if block == "test" else "value"
            state[block] = {action: {"type": kind, "selected_option": {"value": value, "text": {}}}}
    return _post(
        sender,
        {
            "type": "view_submission",
            "team": {"id": TEAM, "domain": "exams"},
            "user": _user(user),
            "api_app_id": "A0EXAMDESK",
            "token": "deprecated-verification-token",
            "trigger_id": "1.2.trigger",
            "view": {
                "id": "V1",
                "type": "modal",
                "callback_id": forms.callback_id(command),
                "private_metadata": forms.Opened(response_url).metadata(),
                "state": {"values": state},
            },
        },
    )


def suggest(sender: SlackSender, typed: str, *, user: str) -> list[dict[str, Any]]:
    """What the test picker offers ``user`` having typed ``typed`` (block_suggestion)."""
    response = _post(
        sender,
        {
            "type": "block_suggestion",
            "user": _user(user),
            "team": {"id": TEAM, "domain": "exams"},
            "api_app_id": "A0EXAMDESK",
            "token": "deprecated-verification-token",
            "action_id": forms.TEST_ACTION,
            "block_id": "test",
            "value": typed,
            "view": {"id": "V1", "type": "modal", "callback_id": "form_incident_time"},
        },
    )
    assert response.status_code == 200
    return response.json()["options"]


def errors_of(response) -> dict[str, str]:
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "errors"
    return answer["errors"]


def incident_minutes(world) -> dict[str, int]:
    with world.factory() as s:
        return dict(s.execute(select(Candidate.number, Candidate.incident_minutes)).all())


def changes(world) -> list[Change]:
    with world.factory() as s:
        return list(s.scalars(select(Change).order_by(Change.id)))


def opened_view(call) -> dict[str, Any]:
    view = call.body["view"]
    return json.loads(view) if isinstance(view, str) else view


def _inputs(view: dict[str, Any]) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if b["type"] == "input"]


def _without_tokens(message: dict[str, Any]) -> str:
    """A confirmation message with its one-time tokens blanked, to compare two of them."""
    text = json.dumps(message["blocks"])
    for element in (e for b in message["blocks"] for e in b.get("elements", [])):
        if isinstance(element, dict) and element.get("type") == "button":
            text = text.replace(element["value"], "TOKEN")
    return text


# ---------------------------------------------------------------- opening


@pytest.mark.parametrize("command", ["incident-time", "reopen", "candidate", "notice"])
def test_a_bare_command_opens_its_form(world, exam, slack, command):
    sender, fake = slack
    response = sender.command(f"/{command}", "", user=SUPPORT, response_url=fake.response_url())
    assert response.status_code == 200
    (call,) = fake.wait_for("views.open")
    assert call.body["trigger_id"] == "13345224609.738474920.8088930838d88f008e0"
    view = opened_view(call)
    assert view["callback_id"] == forms.callback_id(command)
    # `/reopen` shows the fields of the action chosen: until-close has none of its own.
    shown = [f for f in forms.FIELDS[command] if f not in ("datetime", "duration")]
    assert _inputs(view) == shown
    test_field = view["blocks"][0]["element"]
    assert test_field["type"] == "external_select"
    assert test_field["action_id"] == forms.TEST_ACTION
    assert "initial_option" not in test_field
    # The result goes back where the command was typed.
    assert json.loads(view["private_metadata"])["response_url"].startswith(fake.base_url)


def test_a_command_with_text_runs_as_before_and_opens_no_form(world, exam, slack):
    sender, fake = slack
    response = sender.command(
        "/candidate", f"{CODE} 10001", user=SUPPORT, response_url=fake.response_url()
    )
    assert "10001" in response.text
    assert fake.of("views.open") == []


@pytest.mark.parametrize("command", ["incident-time", "reopen", "candidate", "exam", "notice"])
def test_form_open_button_opens_the_form_with_the_test_chosen(world, exam, slack, command):
    sender, fake = slack
    value = json.dumps({"command": command, "test": CODE})
    sender.click(forms.OPEN_ACTION, value, user=SUPPORT, response_url=fake.response_url())
    (call,) = fake.wait_for("views.open")
    view = opened_view(call)
    assert view["callback_id"] == forms.callback_id(command)
    chosen = view["blocks"][0]["element"]["initial_option"]
    assert chosen["value"] == CODE
    assert chosen["text"]["text"].startswith(f"{CODE} · running now")


def test_r15_form_open_chooses_no_test_a_teacher_does_not_teach(world, exam, slack):
    sender, fake = slack
    world.add_staff(OTHER_TEACHER, "teacher")
    value = json.dumps({"command": "candidate", "test": CODE})
    sender.click(forms.OPEN_ACTION, value, user=OTHER_TEACHER, response_url=fake.response_url())
    (call,) = fake.wait_for("views.open")
    assert "initial_option" not in opened_view(call)["blocks"][0]["element"]


def test_form_open_button_for_a_question_error_opens_the_report_form(world, exam, slack):
    sender, fake = slack
    value = json.dumps({"command": "question-error", "test": CODE})
    sender.click(forms.OPEN_ACTION, value, user=TEACHER, response_url=fake.response_url())
    (call,) = fake.wait_for("views.open")
    view = opened_view(call)
    assert view["callback_id"] == "qe_report_modal"
    assert CODE in json.dumps(view["blocks"])


@pytest.mark.parametrize(
    "value",
    ['{"command": "drop-tables"}', "[" * 1500 + "]" * 1500],
    ids=["no-such-form", "nested-too-deep"],
)
def test_form_open_button_naming_no_form_says_so(world, exam, slack, value):
    sender, fake = slack
    url = fake.response_url()
    sender.click(forms.OPEN_ACTION, value, user=SUPPORT, response_url=url)
    (said,) = fake.wait_for("response_url")
    assert "names no form" in said.body["text"]
    assert fake.of("views.open") == []


@pytest.mark.parametrize(
    ("mode", "own"), [("at", "datetime"), ("in", "duration"), ("no-limit", None)]
)
def test_choosing_the_reopen_action_shows_its_own_fields(world, exam, slack, mode, own):
    sender, fake = slack
    metadata = forms.Opened("https://hooks.slack.com/x").metadata()
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "exams"},
        "user": _user(SUPPORT),
        "api_app_id": "A0EXAMDESK",
        "token": "deprecated-verification-token",
        "container": {"type": "view", "view_id": "V42"},
        "trigger_id": "1.2.trigger",
        "view": {
            "id": "V42",
            "hash": "1700000000.abc",
            "type": "modal",
            "callback_id": forms.callback_id("reopen"),
            "private_metadata": metadata,
            "state": {
                "values": {
                    "test": {
                        forms.TEST_ACTION: {
                            "type": "external_select",
                            "selected_option": {"value": CODE},
                        }
                    }
                }
            },
        },
        "actions": [
            {
                "type": "radio_buttons",
                "action_id": forms.MODE_ACTION,
                "block_id": "mode",
                "selected_option": {"value": mode, "text": {"type": "plain_text", "text": mode}},
                "action_ts": "1700000000.1",
            }
        ],
    }
    assert _post(sender, payload).status_code == 200
    (call,) = fake.wait_for("views.update")
    assert (call.body["view_id"], call.body["hash"]) == ("V42", "1700000000.abc")
    view = opened_view(call)
    expected = ["test", "candidate", "mode", *([own] if own else []), "reason"]
    assert _inputs(view) == expected
    assert view["blocks"][2]["element"]["initial_option"]["value"] == mode
    assert view["blocks"][0]["element"]["initial_option"]["value"] == CODE
    assert view["private_metadata"] == metadata


def test_every_form_fits_slacks_limits_in_both_languages():
    """slack_sdk's models check titles, labels and options while building: a title over 24
    characters, in Norwegian too, fails here rather than in Slack."""
    longest = test_picker.Choice(code="X" * 64, title="T" * 300, start=clock.now(), running=True)
    for language in ("en", "nb"):
        with speaking(language):
            shown = [(c, None) for c in forms.COMMANDS] + [
                ("reopen", m) for m in forms.REOPEN_MODES
            ]
            for command, mode in shown:
                opened = forms.Opened("https://x/" * 50)
                view = forms.modal(command, test=longest, opened=opened, mode=mode)
                assert len(view["title"]["text"]) <= 24
                assert len(view["submit"]["text"]) <= 24
                assert len(view["private_metadata"]) <= 3000
            assert len(forms.option(longest).to_dict()["text"]["text"]) <= 75


# ---------------------------------------------------------------- the test picker


@pytest.fixture
def many_tests(world) -> None:
    """Running now, tomorrow, last week; one taught by another teacher."""
    local = world.now.astimezone(OSLO)

    def at(delta: timedelta) -> str:
        return f"{local + delta:%Y-%m-%d %H:%M}"

    world.add_test(
        "TDT4100-2026H",
        title="Objektorientert programmering",
        start=at(timedelta(hours=-1)),
        end=at(timedelta(hours=3)),
    )
    world.add_test(
        "TDT4120-2026H",
        title="Algoritmer og datastrukturer",
        start=at(timedelta(days=1)),
        end=at(timedelta(days=1, hours=4)),
    )
    world.add_test(
        "TDT4110-2026H",
        title="Informasjonsteknologi grunnkurs",
        start=at(timedelta(days=-7)),
        end=at(timedelta(days=-7, hours=4)),
    )
    world.add_test(
        "TMA4100-2026H",
        title="Økonomi og matematikk",
        start=at(timedelta(hours=-2)),
        end=at(timedelta(hours=2)),
        teachers=(OTHER_TEACHER,),
    )


def test_picker_offers_running_tests_first_then_by_start(world, many_tests, slack):
    sender, _fake = slack
    offered = [o["value"] for o in suggest(sender, "tdt", user=SUPPORT)]
    assert offered == ["TDT4100-2026H", "TDT4120-2026H", "TDT4110-2026H"]
    everything = [o["value"] for o in suggest(sender, "", user=SUPPORT)]
    assert everything == ["TMA4100-2026H", "TDT4100-2026H", "TDT4120-2026H", "TDT4110-2026H"]
    first = suggest(sender, "tdt41", user=SUPPORT)[0]
    assert first["text"]["text"] == "TDT4100-2026H · running now · Objektorientert programmering"


def test_picker_matches_the_title_in_any_case(world, many_tests, slack):
    sender, _fake = slack
    assert [o["value"] for o in suggest(sender, "ALGORITMER", user=SUPPORT)] == ["TDT4120-2026H"]
    assert [o["value"] for o in suggest(sender, "økonomi", user=SUPPORT)] == ["TMA4100-2026H"]
    assert suggest(sender, "100%", user=SUPPORT) == []  # a wildcard is a character here


def test_r15_picker_shows_a_teacher_only_their_tests(world, many_tests, slack):
    sender, _fake = slack
    assert [o["value"] for o in suggest(sender, "", user=OTHER_TEACHER)] == ["TMA4100-2026H"]
    assert [o["value"] for o in suggest(sender, "tma", user=TEACHER)] == []
    assert suggest(sender, "", user=STRANGER) == []


def test_picker_offers_at_most_100(world, session_factory):
    for n in range(120):
        world.add_test(f"EXP{n:04d}", teachers=())
    with session_factory() as s:
        found = test_picker.matching(db_session=s, user_id=SUPPORT, typed="exp", now=world.now)
    assert len(found) == test_picker.MOST == 100


# ---------------------------------------------------------------- refusals on their field

GOOD_INCIDENT = {
    "test": CODE,
    "who": "listed",
    "candidates": "10001",
    "operation": "add",
    "minutes": "15",
    "reason": "network down in room 3",
}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"minutes": "1h90m"}, "minutes", "2h30m"),
        ({"minutes": "add"}, "minutes", "not a duration"),
        ({"minutes": "0"}, "minutes", "changes nothing"),
        ({"candidates": "10001, 99999"}, "candidates", "no candidate 99999"),
        ({"candidates": "ten"}, "candidates", "not a list of candidates"),
        ({"candidates": ""}, "candidates", "Give the candidate numbers"),
        ({"reason": "--quiet"}, "reason", "Give a reason"),
        ({"operation": "subtract"}, "minutes", "below zero"),
        ({"test": "NOPE-2026H"}, "test", "There is no test NOPE-2026H"),
        ({"minutes": "1h", "reason": "30m lost"}, "reason", "begins like the rest of a duration"),
        ({"minutes": "10", "reason": "h lost"}, "reason", "begins like the rest of a duration"),
        ({"reason": "network \u202edown"}, "reason", "U+202E, which turns around the text"),
    ],
)
def test_r4_a_bad_field_shows_on_that_field_and_changes_nothing(
    world, exam, slack, change, field, says
):
    sender, fake = slack
    response = submit(
        sender, "incident-time", GOOD_INCIDENT | change, response_url=fake.response_url()
    )
    errors = errors_of(response)
    assert list(errors) == [field]
    assert says in errors[field]
    assert "Usage:" not in errors[field]  # the form is the usage
    assert set(incident_minutes(world).values()) == {0}
    assert changes(world) == []


def test_r5_after_the_ordinary_end_the_refusal_shows_on_the_test(world, exam, slack):
    sender, _fake = slack
    world.at("2026-12-01 13:30")
    errors = errors_of(submit(sender, "incident-time", GOOD_INCIDENT))
    assert "has passed" in errors["test"] and "/reopen" in errors["test"]
    assert changes(world) == []


def test_r15_a_teacher_is_refused_on_the_test_field(world, exam, slack):
    sender, _fake = slack
    errors = errors_of(submit(sender, "incident-time", GOOD_INCIDENT, user=TEACHER))
    assert list(errors) == ["test"]
    assert "support" in errors["test"]
    assert changes(world) == []


GOOD_REOPEN = {"test": CODE, "candidate": "10001", "mode": "at", "reason": "upload failed"}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"datetime": "25:00"}, "datetime", "not a time of day"),
        ({"datetime": "09:30"}, "datetime", "not in the future"),
        ({"datetime": ""}, "datetime", "Give one date and time"),
        ({"datetime": "2026-12-01 15:30 extra"}, "datetime", "Give one date and time"),
        ({"mode": "in", "duration": "0"}, "duration", "`in 0`"),
        ({"mode": "in", "duration": "30"}, "mode", "only possible after the ordinary end"),
        ({"candidate": "10001, 10002", "datetime": "15:00"}, "candidate", "one candidate"),
        ({"candidate": "99999", "datetime": "15:00"}, "candidate", "no candidate 99999"),
        ({"datetime": "15:00", "reason": ""}, "reason", "Give a reason"),
        ({"mode": "close-current"}, "candidate", "not open for new delivery"),
    ],
)
def test_r6_r7_reopen_refusals_show_on_their_field(world, exam, slack, change, field, says):
    sender, _fake = slack
    errors = errors_of(submit(sender, "reopen", GOOD_REOPEN | change))
    assert list(errors) == [field]
    assert says in errors[field]
    with world.factory() as s:
        assert s.scalars(select(Reopening)).all() == []
    assert changes(world) == []


def test_notice_without_text_is_refused_on_the_norwegian_text(world, exam, slack):
    sender, _fake = slack
    errors = errors_of(submit(sender, "notice", {"test": CODE, "text_nb": " ", "text_en": ""}))
    assert list(errors) == ["text_nb"]


def test_notice_too_long_is_refused_on_its_language(world, exam, slack):
    sender, _fake = slack
    values = {"test": CODE, "text_nb": "Oppgave 3: n = 10.", "text_en": "x" * 2001}
    errors = errors_of(submit(sender, "notice", values))
    assert list(errors) == ["text_en"] and "2000" in errors["text_en"]


def test_r13_a_direction_control_in_a_notice_is_refused_on_its_language(world, exam, slack):
    sender, _fake = slack
    values = {"test": CODE, "text_nb": "Oppgave 3: n = 10.", "text_en": "Task \u202e3: n = 10."}
    errors = errors_of(submit(sender, "notice", values))
    assert list(errors) == ["text_en"] and "U+202E" in errors["text_en"]


# ---------------------------------------------------------------- good submissions


def test_r4_a_form_applies_exactly_what_typing_it_does(world, exam, slack):
    sender, fake = slack
    typed = sender.command(
        "/incident-time",
        f"{CODE} 10001 add 1h30m network down in room 3",
        user=SUPPORT,
        response_url=fake.response_url(),
    ).json()
    url = fake.response_url()
    response = submit(
        sender,
        "incident-time",
        GOOD_INCIDENT | {"candidates": "10002", "minutes": "1h 30m"},
        response_url=url,
    )
    assert response.status_code == 200 and response.text == ""  # the form closes
    (answer,) = fake.wait_for("response_url")
    assert answer.path == url.removeprefix(fake.base_url)
    assert answer.body["response_type"] == "ephemeral"
    assert answer.body["text"] == typed["text"].replace("10001", "10002")
    assert incident_minutes(world) == {"10001": 90, "10002": 90, "10003": 0, "10004": 0}
    by_typing, by_form = changes(world)
    assert (by_form.action, by_form.reason, by_form.actor) == (
        by_typing.action,
        by_typing.reason,
        by_typing.actor,
    )
    assert (by_typing.before, by_typing.after) == ({"10001": 0}, {"10001": 90})
    assert (by_form.before, by_form.after) == ({"10002": 0}, {"10002": 90})


def test_r4_all_via_the_form_asks_to_confirm_as_typed(world, exam, slack):
    sender, fake = slack
    values = GOOD_INCIDENT | {"who": "all", "candidates": "10001", "minutes": "10"}
    url = fake.response_url()
    assert submit(sender, "incident-time", values, response_url=url).text == ""
    (asked,) = fake.wait_for("response_url")
    typed = sender.command(
        "/incident-time",
        f"{CODE} all add 10 network down in room 3",
        user=SUPPORT,
        response_url=fake.response_url(),
    ).json()
    assert _without_tokens(asked.body) == _without_tokens(typed)
    assert "all 4 candidates" in asked.body["text"]
    assert set(incident_minutes(world).values()) == {0}  # nothing yet

    (token,) = {
        e["value"] for b in asked.body["blocks"] for e in b.get("elements", []) if "value" in e
    }
    with world.factory() as s:
        assert s.get(Confirmation, token).command == (
            f"/incident-time {CODE} all add 10 network down in room 3"
        )
    sender.post(
        block_action("examdesk_confirm", token, user=SUPPORT, response_url=fake.response_url())
    )
    (_, done) = fake.wait_for("response_url", 2)
    assert "all 4 candidates" in done.body["text"]
    assert set(incident_minutes(world).values()) == {10}


def test_r6_r7_reopen_form_no_limit_asks_to_confirm_and_close_delivers(world, exam, slack):
    sender, fake = slack
    world.at("2026-12-01 13:30")  # after the ordinary end (13:15)
    url = fake.response_url()
    values = {"test": CODE, "candidate": "10001", "mode": "no-limit", "reason": "upload failed"}
    assert submit(sender, "reopen", values, response_url=url).text == ""
    (asked,) = fake.wait_for("response_url")
    assert "no time limit" in asked.body["text"]
    with world.factory() as s:
        assert s.scalars(select(Reopening)).all() == []

    values |= {"mode": "in", "duration": "45 m"}
    # The clock goes on ticking while the server works: the deadline is 45 minutes from
    # the moment the form was handled, somewhere between these two readings.
    before = clock.now().replace(microsecond=0)
    assert submit(sender, "reopen", values, response_url=fake.response_url()).text == ""
    fake.wait_for("response_url", 2)
    after = clock.now()
    with world.factory() as s:
        (reopening,) = s.scalars(select(Reopening)).all()
        assert reopening.mode == "in" and reopening.reason == "upload failed"
        assert before + timedelta(minutes=45) <= reopening.deadline <= after + timedelta(minutes=45)

    closing = {"test": CODE, "candidate": "10001", "mode": "close-current", "reason": ""}
    assert submit(sender, "reopen", closing, response_url=fake.response_url()).text == ""
    fake.wait_for("response_url", 3)
    assert world.candidate(CODE, "10001").status == "submitted"


def test_r13_notice_form_previews_both_languages_before_sending(world, exam, slack):
    sender, fake = slack
    values = {"test": CODE, "text_nb": "Oppgave 3: n = 10.", "text_en": "Task 3: n = 10."}
    assert submit(sender, "notice", values, response_url=fake.response_url()).text == ""
    (asked,) = fake.wait_for("response_url")
    assert "Oppgave 3: n = 10." in asked.body["text"] and "Task 3: n = 10." in asked.body["text"]
    assert asked.body["blocks"][-2]["elements"][0]["action_id"] == "examdesk_confirm"
    with world.factory() as s:
        assert s.scalars(select(Notice)).all() == []


def test_candidate_form_shows_the_card_and_from_home_comes_as_a_direct_message(world, exam, slack):
    sender, fake = slack
    # Opened from the Home tab: no response_url, the card comes as a direct message.
    assert submit(sender, "candidate", {"test": CODE, "candidate": "10003"}).text == ""
    (posted,) = fake.wait_for("chat.postMessage")
    assert posted.body["channel"] == SUPPORT
    assert "10003" in posted.body["text"]
    errors = errors_of(submit(sender, "candidate", {"test": CODE, "candidate": "10009"}))
    assert list(errors) == ["candidate"]


def test_r13_a_notice_written_in_the_form_keeps_its_line_breaks(world, exam, slack):
    """The form's text fields are multiline and the candidate's page shows line breaks: a
    list the teacher wrote reaches the candidates as a list, not run together."""
    sender, fake = slack
    text_nb = "Oppgave 3:\n- bruk kg, ikke g\n\n- n = 10"
    text_en = "Task 3:\n  - use kg, not g"
    values = {"test": CODE, "text_nb": text_nb, "text_en": text_en}
    assert submit(sender, "notice", values, response_url=fake.response_url()).text == ""
    (asked,) = fake.wait_for("response_url")
    shown = "> Oppgave 3:\n> - bruk kg, ikke g\n> \n> - n = 10\nen:\n> Task 3:\n>   - use kg"
    assert escape(shown) in asked.body["text"]
    (token,) = {
        e["value"] for b in asked.body["blocks"] for e in b.get("elements", []) if "value" in e
    }
    sender.post(
        block_action("examdesk_confirm", token, user=SUPPORT, response_url=fake.response_url())
    )
    fake.wait_for("response_url", 2)
    with world.factory() as s:
        (notice,) = s.scalars(select(Notice)).all()
    assert (notice.text_nb, notice.text_en) == (text_nb, text_en)
