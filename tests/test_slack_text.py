"""Text between Slack and examdesk (issue 15, item 5).

Slack's escaping is undone once, at the Slack front door, and never for `examdesk run`; what
users typed (mentions, broadcasts, links) shows as text in everything examdesk posts, blocks
and fallback text alike; fallback text is capped and long lists are cut with "… and N more".
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from conftest import OSLO, SUPPORT, TEACHER, World
from fake_slack import FakeSlack
from fake_twilio import seed_candidates, wait_until
from notifier import running_notifier
from served import serving, slack_settings
from slack_signing import SlackSender, block_action
from sqlalchemy import func, select

from bot.config import Settings
from bot.runtime.server import Wiring
from bot.slack.text import FALLBACK_LIMIT, from_slack
from bot.slack.views import blocks
from bot.slack.views import notices as blocks_notices
from commands import question_error
from commands.reply import Reply
from notifications import outbox
from notifications.dispatch import Tuning, from_settings
from store import clock
from store.models import Candidate, Change, Notice, QuestionErrorReport

CHANNEL = "C0SUPPORT"
OTHER = "U0OTHER99"
FAST = Tuning(backoff_base=0.05, backoff_cap=0.2, poll_seconds=0.05, send_timeout=2)

# What a user typed, as Slack sends it: characters typed literally arrive escaped, the
# mentions, broadcast and link picked in Slack's composer arrive as control sequences.
TYPED_IN_SLACK = (
    "power cut &lt;!channel&gt; &lt;@U0OTHER99&gt; &lt;https://evil.example|Open&gt; "
    "<!here> <@U0OTHER99|ola> <https://evil.example|click here> <#C0GENERAL|general>"
)
# The same text as the user typed it, which is what examdesk stores.
AS_TYPED = (
    "power cut <!channel> <@U0OTHER99> <https://evil.example|Open> "
    "@here @ola click here (https://evil.example) #general"
)


# ---------------------------------------------------------------- helpers


@dataclass
class Served:
    url: str
    slack: SlackSender
    fake: FakeSlack
    wiring: Wiring


@pytest.fixture
def served(engine, session_factory) -> Iterator[Served]:
    fake = FakeSlack()
    settings = slack_settings(
        fake, slack_support_channel=CHANNEL, public_url="https://exams.example.org"
    )
    with serving(settings, engine=engine, session_factory=session_factory) as (wiring, url):
        sender = SlackSender(url)
        # The outbox's posts only: the test dispatches notices itself (dispatch_all).
        with running_notifier(settings, session_factory, transports={}):
            yield Served(url=url, slack=sender, fake=fake, wiring=wiring)
        sender.close()
    fake.close()


def running(world: World, code: str = "TDT4100-2026H", *, hours: int = 4, **kw) -> str:
    """A test running now on the real clock (the server and dispatcher use it)."""
    world.now = clock.now().replace(second=0, microsecond=0)
    local = world.now.astimezone(OSLO)
    return world.add_test(
        code,
        start=f"{local - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{local + timedelta(hours=hours - 1):%Y-%m-%d %H:%M}",
        **kw,
    )


def sequences(payload: object) -> set[str]:
    """Every Slack control sequence (``<…>``) in the strings of a posted payload."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.update(re.findall(r"<([^<>]*)>", value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(payload)
    return found


def assert_only_own_mentions(payload: object, *users: str) -> None:
    """Nothing in ``payload`` pings, broadcasts or links but mentions of ``users``."""
    assert sequences(payload) <= {f"@{u}" for u in users}, json.dumps(payload)[:2000]


def button(body: dict, action_id: str) -> dict:
    for block in body["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no {action_id} button")


def _posted_ts(world) -> str | None:
    """Where the report's post landed in Slack, once the outbox has sent it."""
    with world.factory() as s:
        found = s.scalars(select(QuestionErrorReport)).one()
        return (outbox.result_of(s, question_error.report_key(found.id)) or {}).get("ts")


def _report(world: World) -> QuestionErrorReport:
    with world.factory() as s:
        return s.scalars(select(QuestionErrorReport)).one()


def dispatch_all(settings: Settings, session_factory) -> None:
    dispatcher = from_settings(settings, session_factory, tuning=FAST)
    try:
        while dispatcher.dispatch_batch():
            pass
    finally:
        dispatcher.close()


# ---------------------------------------------------------------- in: Slack's escaping


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("use n &lt; 10 &amp; m &gt; 2", "use n < 10 & m > 2"),
        # Typed "&lt;" arrives as "&amp;lt;": undone once, it is "&lt;" again, not "<".
        ("write &amp;lt; for &lt;", "write &lt; for <"),
        ("ask <@U0TEACHER1|kari> or <@U0TEACHER1>", "ask @kari or @U0TEACHER1"),
        ("see <#C0HELP|exam-help> or <#C0HELP>", "see #exam-help or #C0HELP"),
        ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
        ("<!subteam^S0SUP|@exam-support> <!subteam^S0SUP>", "@exam-support @S0SUP"),
        ("due <!date^1700000000^{date_short}|Nov 14>", "due Nov 14"),
        ("<https://exam.example.org/a?x=1&amp;y=2>", "https://exam.example.org/a?x=1&y=2"),
        ("<http://errata.example.org|errata.example.org>", "errata.example.org"),
        ("<mailto:support@uni.no|support@uni.no>", "support@uni.no"),
        ("<https://evil.example|Official errata>", "Official errata (https://evil.example)"),
        ("a &amp;&amp; b", "a && b"),
    ],
)
def test_slack_text_is_undone_once_as_slacks_formatting_docs_say(sent, typed):
    assert from_slack(sent) == typed


def test_r13_notice_typed_in_slack_reaches_the_candidates_page_as_typed(served, world):
    code = running(world)
    world.add_candidates(code, ["101"])
    sent = "Task 3: use n &lt; 10 &amp; m &gt; 2, ask <@U0TEACHER1|kari>"
    body = served.slack.command(
        "/notice", f"{code} {sent}", user=SUPPORT, response_url=served.fake.response_url()
    ).json()
    served.slack.click(
        "examdesk_confirm",
        button(body, "examdesk_confirm")["value"],
        user=SUPPORT,
        response_url=served.fake.response_url(),
    )
    served.fake.wait_for("response_url")
    with world.factory() as s:
        notice = s.scalars(select(Notice)).one()
        token = s.scalar(select(Candidate.notice_token))
    assert notice.text_en == "Task 3: use n < 10 & m > 2, ask @kari"
    page = httpx.get(f"{served.url}/notices/{token}").text
    # HTML-escaped once by the page, so the browser shows what was typed.
    assert "use n &lt; 10 &amp; m &gt; 2, ask @kari" in page
    assert "&amp;lt;" not in page and "&amp;amp;" not in page


def test_r13_notice_typed_in_slack_reaches_e_mails_as_typed(served, world, caplog):
    """Home exam over 6 hours: the notice goes by e-mail (written to the log without SMTP)."""
    code = running(world, "HOME-8H", hours=8, kind="home")
    world.add_candidates(code, ["201"], email="kari.nordmann@stud.example.no")
    body = served.slack.command(
        "/notice",
        f"{code} use n &lt; 10 &amp; m &gt; 2",
        user=SUPPORT,
        response_url=served.fake.response_url(),
    ).json()
    assert "0 SMS, 1 e-mails" in body["text"]
    served.slack.click(
        "examdesk_confirm",
        button(body, "examdesk_confirm")["value"],
        user=SUPPORT,
        response_url=served.fake.response_url(),
    )
    served.fake.wait_for("response_url")
    with caplog.at_level(logging.WARNING, logger="notifications.transports"):
        dispatch_all(served.wiring.deps.settings, world.factory)
    (logged,) = [r.getMessage() for r in caplog.records if "logged instead of sent" in r.message]
    assert "use n < 10 & m > 2" in logged and "&lt;" not in logged


def test_examdesk_run_is_not_unescaped(world, cli):
    """Typed in a terminal, the text was never escaped: `&lt;` and `<@…>` stay as typed."""
    code = running(world)
    world.add_candidates(code, ["101"])
    typed = "write &lt;b&gt; &amp; ask <@U0OTHER99>"
    done = cli("run", "--as", SUPPORT, "--yes", f"/notice {code} {typed}")
    assert done.returncode == 0, done.stderr
    with world.factory() as s:
        assert s.scalars(select(Notice.text_nb)).one() == typed


def test_a_modal_input_is_taken_as_typed(served, world):
    """Slack hands plain-text inputs over as typed: nothing to undo."""
    from test_question_error_slack import submit

    code = running(world)
    world.add_candidates(code, ["101"])
    submit(
        served.slack,
        blocks_notices.REPORT_MODAL,
        {"test": code, "text_nb": "n < 10 & m > 2, not &lt;", "question": "Task 3"},
        user=TEACHER,
    )
    served.fake.wait_for("chat.postMessage")
    with world.factory() as s:
        assert s.scalars(select(QuestionErrorReport.text_nb)).one() == "n < 10 & m > 2, not &lt;"


# ---------------------------------------------------------------- out: nothing typed pings


def test_r4_typed_mentions_broadcasts_and_links_in_a_reason_are_text_in_every_post(served, world):
    code = running(world)
    world.add_candidates(code, ["101"])
    ack = served.slack.command(
        "/incident-time",
        f"{code} 101 add 15 {TYPED_IN_SLACK}",
        user=SUPPORT,
        response_url=served.fake.response_url(),
    ).json()
    with world.factory() as s:
        assert s.scalars(select(Change.reason)).one() == AS_TYPED
    assert "&lt;!channel&gt;" in json.dumps(ack["blocks"])  # shown, as text
    (log,) = served.fake.wait_for("chat.postMessage")
    served.slack.event({"type": "app_home_opened", "user": SUPPORT, "channel": "D1", "tab": "home"})
    (home,) = served.fake.wait_for("views.publish")
    assert "power cut" in json.dumps(home.body["view"])
    for posted in (ack, log.body, home.body):
        assert_only_own_mentions(posted, SUPPORT)
    assert f"<@{SUPPORT}>" in log.body["text"]  # the core's own mention stays one
    # Every text object says verbatim: a typed "@here" is not parsed into a broadcast.
    objects = re.findall(r'\{"type": "mrkdwn"[^}]*\}', json.dumps(log.body["blocks"]))
    assert objects and all('"verbatim": true' in o for o in objects)


def test_r13_typed_mentions_broadcasts_and_links_in_a_notice_are_text_in_every_post(served, world):
    code = running(world)
    world.add_candidates(code, ["101", "102"])
    ask = served.slack.command(
        "/notice", f"{code} {TYPED_IN_SLACK}", user=SUPPORT, response_url=served.fake.response_url()
    ).json()
    assert_only_own_mentions(ask, SUPPORT)
    answer_url = served.fake.response_url()
    served.slack.click(
        "examdesk_confirm",
        button(ask, "examdesk_confirm")["value"],
        user=SUPPORT,
        response_url=answer_url,
    )
    (answer,) = served.fake.wait_for("response_url")
    (log,) = served.fake.wait_for("chat.postMessage")
    for posted in (answer.body, log.body):
        assert_only_own_mentions(posted, SUPPORT)
    with world.factory() as s:
        assert s.scalars(select(Notice.text_nb)).one() == AS_TYPED


def test_r14_typed_mentions_in_a_question_error_report_are_text_in_every_post(served, world):
    code = running(world)
    world.add_candidates(code, ["101"])
    ack = served.slack.command(
        "/question-error",
        f"{code} {TYPED_IN_SLACK}",
        user=TEACHER,
        response_url=served.fake.response_url(),
    ).json()
    (report,) = served.fake.wait_for("chat.postMessage")
    assert "power cut" in json.dumps(report.body["blocks"])
    wait_until(lambda: _posted_ts(world) is not None, timeout=30)
    report_id = _report(world).id
    served.slack.post(
        block_action(
            blocks_notices.REJECT_ACTION,
            str(report_id),
            user=SUPPORT,
            response_url=served.fake.response_url(),
            channel=CHANNEL,
        )
    )
    (update,) = served.fake.wait_for("chat.update")
    thread = served.fake.wait_for("chat.postMessage", 2)[1]
    assert thread.body.get("thread_ts") and "decided not to send" in thread.body["text"]
    assert_only_own_mentions(ack, TEACHER)
    for posted in (report.body, update.body, thread.body):
        assert_only_own_mentions(posted, TEACHER, SUPPORT)


def test_a_mention_is_kept_only_for_the_users_the_core_names():
    reply = Reply(
        text=f"<@{SUPPORT}> did it; why: <@{OTHER}> <@{SUPPORT}> <!channel>",
        mentions=(SUPPORT,),
    )
    shown = blocks.message(reply, tz=OSLO)
    assert shown["text"] == (
        f"<@{SUPPORT}> did it; why: &lt;@{OTHER}&gt; <@{SUPPORT}> &lt;!channel&gt;"
    )
    assert_only_own_mentions(shown, SUPPORT)


# ---------------------------------------------------------------- out: capped


def test_r4_refusal_for_5000_candidates_stays_under_the_fallback_cap(served, world):
    code = running(world)
    seed_candidates(world.factory, code, 5000, incident_minutes=5)
    body = served.slack.command(
        "/incident-time",
        f"{code} all subtract 10 oops",
        user=SUPPORT,
        response_url=served.fake.response_url(),
    ).json()
    assert body["text"].startswith("Subtracting 10 min would take incident time below zero")
    assert "for 5000 candidates" in body["text"] and "… and 4980 more" in body["text"]
    assert len(body["text"]) <= FALLBACK_LIMIT and len(body["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"] if "text" in b)
    # The core's reply is cut the same way, so `examdesk run` stays readable.
    refused = world.run(f"/incident-time {code} all subtract 10 oops")
    assert not refused.ok and len(refused.text) < 1000 and "… and 4980 more" in refused.text
    missing = ",".join(str(n) for n in range(50_000, 55_000))
    refused = world.run(f"/incident-time {code} {missing} add 5 oops")
    assert not refused.ok and len(refused.text) < 1000 and "… and 4980 more" in refused.text
    with world.factory() as s:
        assert s.scalar(select(func.sum(Candidate.incident_minutes))) == 5 * 5000


def test_long_text_is_cut_with_and_n_more_in_fallback_and_blocks():
    lines = [f"• {n}: 10 min → 20 min & <more>" for n in range(5000)]
    shown = blocks.message(Reply(text="\n".join(lines)), tz=OSLO)
    assert len(shown["text"]) <= FALLBACK_LIMIT
    kept = shown["text"].count("\n• ")
    assert shown["text"].endswith(f"… and {5000 - kept - 1} more lines")
    assert len(shown["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in shown["blocks"])

    one_line = blocks.message(Reply(text="&" * 50_000, mentions=()), tz=OSLO)["text"]
    assert len(one_line) <= FALLBACK_LIMIT and "more characters" in one_line
    # Not cut inside an entity: only whole "&amp;" before the note.
    assert re.fullmatch(r"(&amp;)+ … and \d+ more characters", one_line)
