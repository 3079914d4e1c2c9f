"""Every message, modal and Home view examdesk sends stays within Slack's limits, fed the
largest cases: a receipt for 2,000 candidates, a 10,000-character reason and notice, 200 tests
on the Home tab, 5,000 candidates in a list. Long lists end with "… and N more".

The checker below is written from ../shared/FACTS.md (and docs.slack.dev for the context
block and the message text), independently of ``bot.slack.views.limits``; slack_sdk's Block
Kit models check each payload too.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import test_slack_app
from conftest import OSLO, SUPPORT, TEACHER, World
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from test_slack_app import ephemeral

from bot.slack.outbox_views import RENDERERS
from bot.slack.views import blocks, limits, notices
from bot.slack.views.home import home_view
from commands import change_log, home
from commands.reply import Confirm, Reply
from notifications.outbox import Outgoing
from notifications.progress import Progress
from notifications.slack_post import SlackTransport
from store import clock

fake, served = test_slack_app.fake, test_slack_app.served
CODE = "TDT4100-2026H"
LONG = ("Nettverket falt ut i sal 3 & <@U0NOBODY> sa det ville komme tilbake. " * 150)[:10_000]


# ---------------------------------------------------------------- the checker (FACTS.md)


def _plain_len(obj: Any) -> int:
    return len(obj["text"]) if isinstance(obj, dict) else len(obj or "")


def _elements(value: Any):
    """Every dict inside ``value`` that is an interactive element (has an action_id)."""
    if isinstance(value, dict):
        if "action_id" in value:
            yield value
        for inner in value.values():
            yield from _elements(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _elements(inner)


def violations(payload: dict[str, Any], surface: str) -> list[str]:
    found = []
    all_blocks = payload.get("blocks") or []
    most = 50 if surface == "message" else 100
    if len(all_blocks) > most:
        found.append(f"{len(all_blocks)} blocks > {most}")
    if len(payload.get("text") or "") > 40_000:
        found.append("message text > 40,000")
    if surface != "message":
        for key in ("title", "submit", "close"):
            if key in payload and _plain_len(payload[key]) > 24:
                found.append(f"{key} > 24")
        if len(payload.get("private_metadata") or "") > 3000:
            found.append("private_metadata > 3,000")
    if len(json.dumps(payload).encode()) > 250_000:
        found.append("over 250 kB")
    for block in all_blocks:
        kind = block["type"]
        if kind == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                found.append("section text > 3,000")
            fields = block.get("fields") or []
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                found.append("fields")
        if kind == "header" and len(block["text"]["text"]) > 150:
            found.append("header > 150")
        if kind == "context" and len(block["elements"]) > 10:
            found.append("context elements > 10")
        if kind == "actions" and len(block["elements"]) > 25:
            found.append("actions elements > 25")
    for element in _elements(all_blocks):
        if len(element["action_id"]) > 255:
            found.append("action_id > 255")
        if element.get("type") == "button":
            if _plain_len(element["text"]) > 75:
                found.append("button text > 75")
            if len(element.get("value") or "") > 2000:
                found.append("button value > 2,000")
        if len(element.get("options") or []) > 100:
            found.append("select options > 100")
        if element.get("type") == "plain_text_input" and len(
            element.get("initial_value") or ""
        ) > element.get("max_length", 3000):
            found.append("initial value longer than the input allows")
    return found


def assert_fits(payload: dict[str, Any], surface: str = "message") -> None:
    assert violations(payload, surface) == [], violations(payload, surface)
    # slack_sdk's models check the same limits (and more) as they serialise.
    if surface == "message":
        for block in payload.get("blocks") or []:
            Block.parse(block).to_dict()
    else:
        View(**payload).to_dict()


def sent(message: dict[str, Any]) -> dict[str, Any]:
    """A message as a listener sends it."""
    fitted = limits.fit(message)
    assert_fits(fitted)
    return fitted


def posted(payload: dict[str, Any]) -> dict[str, Any]:
    """A post from the outbox, as the Slack transport sends it (``chat.postMessage``)."""
    transport = SlackTransport(base_url="http://127.0.0.1:9/", token="x", renderers=RENDERERS)
    row = Outgoing(
        id=1,
        kind="slack_post",
        target="C1",
        payload=payload,
        attempts=0,
        created_at=clock.now(),
        refers_to={},
    )
    return transport.call(row)[1]


def shown(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


# ---------------------------------------------------------------- the checker checks


def test_the_checker_catches_what_slack_refuses():
    too_many = {"blocks": [{"type": "divider"}] * 51}
    assert violations(too_many, "message") == ["51 blocks > 50"]
    assert violations({"blocks": [{"type": "divider"}] * 51}, "home") == []
    section = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
    assert violations(section, "message") == ["section text > 3,000"]
    button = {
        "type": "button",
        "action_id": "a",
        "text": {"type": "plain_text", "text": "x" * 76},
    }
    assert violations({"blocks": [{"type": "actions", "elements": [button]}]}, "message") == [
        "button text > 75"
    ]


def test_fit_leaves_what_fits_alone_and_cuts_on_a_boundary():
    message = blocks.message(Reply(text="Done: 101 has 15 min."), tz=OSLO)
    assert limits.fit(message) == message
    cut = limits.shorten("word " * 1000, 100)
    assert len(cut) <= 100 and cut.endswith("word…")
    lines = limits.shorten("\n".join(f"line {n}" for n in range(1000)), 300)
    assert len(lines) <= 300 and lines.endswith("more lines") and "\nline 5\n" in lines
    # A cut never leaves half an entity or a mention, nor an open code block.
    assert not limits.shorten("a " * 40 + "&amp;" * 10, 90).rstrip("…").endswith("&")
    assert limits.shorten("```" + "x " * 100, 50).endswith("```")


def test_a_long_list_of_blocks_is_cut_in_the_middle_and_keeps_its_buttons():
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    buttons = {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "Go"}}
        ],
    }
    message = sent({"text": "x", "blocks": [section] * 80 + [buttons]})
    assert len(message["blocks"]) == 50 and message["blocks"][-1] == buttons
    assert message["blocks"][-2]["elements"][0]["text"] == "… and 32 more"
    home = limits.fit({"type": "home", "blocks": [section] * 300}, limits.HOME)
    assert len(home["blocks"]) == 100
    assert home["blocks"][-1]["elements"][0]["text"] == "… and 201 more"
    # Many long blocks weigh more than Slack takes in one view: fewer of them, then.
    heavy = {"type": "section", "text": {"type": "mrkdwn", "text": "é" * 3000}}
    fitted = limits.fit({"type": "home", "blocks": [heavy] * 100}, limits.HOME)
    assert_fits(fitted, "home")


# ---------------------------------------------------------------- the largest cases


@pytest.fixture
def big(world: World) -> World:
    world.at("2026-12-01 10:00")
    world.add_test(CODE, start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_candidates(CODE, range(10_000, 15_000), extra_minutes=20)
    return world


def test_receipt_for_2000_candidates_fits_through_the_real_server(served, big):
    numbers = ",".join(str(n) for n in range(10_000, 12_000))
    body = ephemeral(
        served.slack.command(
            "/incident-time",
            f"{CODE} {numbers} add 15 network outage in room 3 --quiet",
            user=SUPPORT,
            response_url=served.fake.response_url(),
        )
    )
    assert_fits(body)
    assert "…and 1985 more." in body["text"]


def test_every_command_reply_fits_with_5000_candidates(big):
    numbers = ",".join(str(n) for n in range(10_000, 12_000))
    replies = [
        big.run(f"/incident-time {CODE} {numbers} add 15 network outage"),
        big.run(f"/incident-time {CODE} all add 5 network outage"),
        big.run(f"/incident-time {CODE} all add 5 network outage", confirmed=True),
        big.run(f"/exam {CODE}"),
        big.run("/exam"),
        big.run(f"/candidate {CODE} 10000"),
        big.run(f"/candidate {CODE} 10000 history"),
        big.run(f"/incident-time {CODE} {numbers},99999 add 15 typo"),
    ]
    for reply in replies:
        if reply.confirm is not None:  # as confirmations.run_offering stores it
            reply.confirm = dataclasses.replace(reply.confirm, token="t")
        message = blocks.message(reply, tz=OSLO)
        sent(message)
        for lines in (reply.log, [LONG] * 5000):
            data = {"lines": lines or ["x"], "via": "/incident-time", "mentions": []}
            assert_fits(posted({"render": change_log.RENDER, "data": data}))


@pytest.mark.parametrize("kind", ["message", "usage", "receipt", "refusal", "overview_refresh"])
def test_a_10000_character_text_fits_in_every_layout(kind):
    lines = "\n".join(f"{n} has 15 min incident time — {LONG[:80]}" for n in range(5000))
    for text in (LONG, lines, "x" * 50_000):
        if kind == "refusal":
            reply = Reply(text=text + "\nUsage: " + text, ok=False, kind="refusal")
        elif kind == "overview_refresh":
            reply = Reply(text=text, kind="message")
        else:
            reply = Reply(text=text, kind=kind, data={"undo_until": None})
        message = sent(blocks.message(reply, tz=OSLO))
        assert len(message["text"]) <= 40_000


def test_a_confirmation_with_a_10000_character_reason_keeps_its_buttons():
    confirm = Confirm(prompt=LONG, command="/incident-time T all add 5 x", button=LONG, token="t")
    message = sent(blocks.message(Reply(text=LONG, kind="confirm", confirm=confirm), tz=OSLO))
    actions = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [
        blocks.CONFIRM_ACTION,
        blocks.CANCEL_ACTION,
    ]


def _report(text: str, unreachable: int) -> dict[str, Any]:
    return {
        "report_id": 7,
        "test": CODE,
        "reported_by": TEACHER,
        "reported_at": "2026-12-01 10:00 CET",
        "question": text[:300],
        "text_nb": text,
        "text_en": text,
        "suggested_minutes": 10,
        "state": "open",
        "handled_by": None,
        "plan": {
            "inapp": 5000,
            "sms": 5000,
            "email": 0,
            "unreachable": [str(n) for n in range(unreachable)],
            "not_configured": LONG,
        },
        "language_note": LONG,
        "slack_channel": "C1",
        "slack_ts": "1.2",
    }


def test_a_long_notice_and_its_progress_for_5000_candidates_fit():
    problems = [(str(n), "sms", "failed", LONG[:200]) for n in range(5000)]
    progress = Progress(
        notice_id=3,
        test_code=CODE,
        inapp=5000,
        read=10,
        by_channel={"sms": {"failed": 5000}},
        problems=problems,
        problem_count=5000,
    )
    report = _report(LONG, 5000)
    assert_fits(posted({"render": "report", "data": report}))
    assert_fits(posted({"method": "chat.update", "render": "report", "data": report}))
    assert_fits(limits.fit(notices.report_blocks(report, progress=progress)))
    assert_fits(limits.fit(notices.notice_progress_message(progress)))
    assert len(notices.summary_text(progress)) <= 40_000
    # As drawn, the edit form would be refused (its text is longer than the input allows).
    assert violations(notices.edit_modal(report), "modal")
    for modal in (
        notices.report_modal(LONG, LONG),
        notices.edit_modal(report | {"report_id": 10**12}),
        notices.minutes_modal(report),
    ):
        fitted = limits.fit(modal, limits.MODAL)
        assert_fits(fitted, "modal")


def test_other_messages_fit():
    assert_fits(posted({"args": {"text": "x " * 30_000, "blocks": [{"type": "divider"}] * 60}}))
    assert_fits(limits.fit(blocks.unexpected_error("x" * 5000)))
    assert_fits(limits.fit(blocks.change_log([LONG] * 5000, via=LONG)))


@pytest.fixture
def many_tests(world: World) -> World:
    """200 tests running today, every one taught by TEACHER, with candidates and a long
    title."""
    world.at("2026-12-01 10:00")
    for n in range(200):
        code = f"T{n:04d}-2026H"
        world.add_test(
            code,
            start="2026-12-01 09:00",
            end="2026-12-01 13:00",
            title=LONG[:300],
            teachers=(TEACHER,),
        )
    world.add_candidates("T0000-2026H", range(1, 2000))
    for n in range(100):
        world.run(f"/incident-time T0000-2026H {n + 1} add 5 {LONG[:400]}")
    return world


def test_200_tests_on_the_home_tab_fit_for_support_and_teacher(served, many_tests):
    served.slack.event({"type": "app_home_opened", "user": SUPPORT, "tab": "home"})
    (publish,) = served.fake.wait_for("views.publish")
    view = publish.body["view"]
    assert_fits(view, "home")
    assert "… and 188 more" in shown(view)
    with many_tests.factory() as s:
        teacher = home_view(
            home.build(db_session=s, user_id=TEACHER, now=many_tests.now, tz=OSLO), tz=OSLO
        )
    assert_fits(teacher, "home")
    assert "… and 188 more" in shown(teacher)


def test_200_tests_today_fit_in_exam_alone(many_tests):
    for actor in (SUPPORT, TEACHER):
        reply = many_tests.run("/exam", actor=actor)
        message = sent(blocks.message(reply, tz=OSLO))
        assert "… and 160 more" in shown(message)
