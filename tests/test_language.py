"""Staff-facing text in Norwegian (bokmål) and English from one catalogue, chosen per person:
`staff add --language`, else their Slack locale (users.info), else English."""

from __future__ import annotations

import re
import string
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from conftest import OSLO, SUPPORT, World
from fake_slack import FakeSlack
from served import serving, slack_settings
from slack_signing import SlackSender

from bot.config import Settings
from commands.language import CATALOGUE, speaking
from store import clock

REPO = Path(__file__).resolve().parents[1]
PO = CATALOGUE / "nb" / "LC_MESSAGES" / "messages.po"
CODE = "TDT4100-2026H"
CHOSE_NB = "U0NORSK01"
SLACK_NB = "U0NORSK02"
ENGLISH = "U0ENGLISH1"
# A rule id as the rules name them (R1–R15), which replies must not show.
# A CLI run may wait its turn for the CPU behind other tests' processes.
SLOW = 180
RULE_ID = re.compile(r"\bR(?:[1-9]|1[0-5])\b")


def extracted() -> dict[str, str]:
    """Every message in commands/ and bot/ marked with ``_``, ``ngettext`` or ``N_`` (a label
    in a table, translated where it is shown): msgid → where."""
    found: dict[str, str] = {}
    for folder in ("commands", "bot"):
        for name, line, message, _comments, _context in extract_from_dir(
            str(REPO / folder),
            [("**.py", "python")],
            keywords={"_": None, "N_": None, "ngettext": (1, 2)},
        ):
            key = message if isinstance(message, str) else message[0]
            found.setdefault(key, f"{folder}/{name}:{line}")
    return found


def catalogue():
    with PO.open("rb") as po:
        return read_po(po, locale="nb")


def fields(text: str) -> set[str]:
    return {name for _t, name, _f, _c in string.Formatter().parse(text) if name is not None}


# ---------------------------------------------------------------- the catalogue


def test_every_message_has_norwegian_and_nothing_else_is_in_the_catalogue():
    messages = extracted()
    assert len(messages) > 50, "the extractor found the staff-facing text"
    po = catalogue()
    translated = {m.id if isinstance(m.id, str) else m.id[0]: m for m in po if m.id}
    missing = [
        f"{where}: {msgid!r}" for msgid, where in messages.items() if msgid not in translated
    ]
    assert not missing, "no Norwegian for:\n" + "\n".join(missing)
    for msgid in messages:
        message = translated[msgid]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(s.strip() for s in strings), f"empty Norwegian for {msgid!r}"
        assert not message.fuzzy, f"fuzzy Norwegian for {msgid!r}"
    # Obsolete: a translation of a message no code says any more.
    assert not po.obsolete
    unused = sorted(set(translated) - set(messages))
    assert not unused, f"messages.po translates messages no code has: {unused}"


def test_placeholders_are_the_same_in_both_languages():
    for message in catalogue():
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set().union(*(fields(i) for i in ids))
        for translated in strings:
            assert fields(translated) <= wanted, (message.id, translated)
            # Plural forms may leave the count out of the singular; nothing else goes missing.
            assert wanted - fields(translated) <= {"n"}, (message.id, translated)


def test_a_message_in_english_only_is_found(tmp_path):
    """The extraction the first test relies on sees a new message in a listener's reply."""
    (tmp_path / "new.py").write_text(
        'from commands.language import _\nREPLY = _("A brand new reply only in English.")\n'
    )
    found = [m for _n, _l, m, _c, _x in extract_from_dir(str(tmp_path), [("**.py", "python")])]
    assert found == ["A brand new reply only in English."]
    assert "A brand new reply only in English." not in {m.id for m in catalogue()}


# ---------------------------------------------------------------- through Slack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def slack(engine, session_factory, fake) -> Iterator[SlackSender]:
    settings = slack_settings(fake)
    with serving(settings, engine=engine, session_factory=session_factory) as (_, url):
        sender = SlackSender(url)
        yield sender
        sender.close()


@pytest.fixture
def exam(world: World) -> World:
    """A school exam running now (the server's clock), candidates 101–103."""
    now = clock.now().astimezone(OSLO).replace(second=0, microsecond=0)
    world.now = now
    world.add_test(
        CODE,
        start=(now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"),
        end=(now + timedelta(hours=3)).strftime("%Y-%m-%d %H:%M"),
    )
    world.add_candidates(CODE, [101, 102, 103])
    return world


def reply_text(response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["text"]


def test_staff_who_chose_norwegian_get_norwegian(exam, slack, fake, cli):
    added = cli("staff", "add", CHOSE_NB, "--role", "support", "--language", "nb", timeout=SLOW)
    assert added.returncode == 0, added.stderr
    assert f"{CHOSE_NB}\tsupport\t-\tnb" in cli("staff", "list", timeout=SLOW).stdout
    # Their Slack says English: what they chose wins.
    fake.locales[CHOSE_NB] = "en-US"
    url = fake.response_url()
    text = reply_text(
        slack.command(
            "/incident-time",
            f"{CODE} 101 add 15 strømbrudd i sal 3",
            user=CHOSE_NB,
            response_url=url,
        )
    )
    assert text.startswith(f"Ekstratid for hendelser for kandidat 101 i {CODE}: legge til 15 min")
    assert "sluttid" in text and "kl." in text
    refused = reply_text(
        slack.command("/candidate", "NOSUCH-TEST 101", user=CHOSE_NB, response_url=url)
    )
    assert refused.startswith("Det finnes ingen eksamen NOSUCH-TEST.")
    # Chosen: Slack is not asked.
    assert not fake.of("users.info")


def test_staff_whose_slack_speaks_norwegian_get_norwegian(exam, slack, fake):
    exam.add_staff(SLACK_NB, "support")
    fake.locales[SLACK_NB] = "nb-NO"
    url = fake.response_url()
    first = reply_text(
        slack.command(
            "/incident-time", f"{CODE} 102 add 1h30m nettverk", user=SLACK_NB, response_url=url
        )
    )
    assert first.startswith(
        f"Ekstratid for hendelser for kandidat 102 i {CODE}: legge til 1 t 30 min"
    )
    again = reply_text(
        slack.command("/incident-time", f"{CODE} 102 add lots x", user=SLACK_NB, response_url=url)
    )
    assert again.startswith(
        "'lots' er ikke en varighet. Skriv minutter (15) eller timer og minutter (1h30m, 45m, 2h)."
    )
    (asked,) = fake.of("users.info")  # once: the locale is cached
    assert asked.body["user"] == SLACK_NB and asked.body["include_locale"] in ("true", "1", True)


def test_others_get_english(exam, slack, fake):
    exam.add_staff(ENGLISH, "support")
    fake.locales[ENGLISH] = "en-GB"
    url = fake.response_url()
    text = reply_text(
        slack.command(
            "/incident-time", f"{CODE} 103 add 15 power cut", user=ENGLISH, response_url=url
        )
    )
    assert text.startswith(f"Incident time for candidate 103 of {CODE}: add 15 min")
    # No locale given, or Slack failing: English.
    fake.answers["users.info"] = {"ok": False, "error": "user_not_found"}
    stranger = reply_text(slack.command("/exam", CODE, user="U0STRANGE9", response_url=url))
    assert "are not registered as exam support staff or teacher" in stranger
    plain = reply_text(slack.command("/exam", CODE, user=SUPPORT, response_url=url))
    assert "Det finnes" not in plain


def test_examdesk_run_replies_in_the_acting_users_language(exam, cli):
    assert (
        cli(
            "staff", "add", CHOSE_NB, "--role", "support", "--language", "nb", timeout=SLOW
        ).returncode
        == 0
    )
    norsk = cli(
        "run", "--as", CHOSE_NB, f"/incident-time {CODE} 101 add 15 strømbrudd", timeout=SLOW
    )
    assert norsk.returncode == 0, norsk.stderr
    assert norsk.stdout.startswith(f"Ekstratid for hendelser for kandidat 101 i {CODE}")
    assert "Slik angrer du det fram til" in norsk.stdout
    refused = cli("run", "--as", CHOSE_NB, f"/incident-time {CODE} 101 add 15", timeout=SLOW)
    assert refused.returncode == 1 and "Skriv en begrunnelse til slutt" in refused.stderr
    english = cli(
        "run", "--as", SUPPORT, f"/incident-time {CODE} 101 add 15 power cut", timeout=SLOW
    )
    assert english.stdout.startswith(f"Incident time for candidate 101 of {CODE}")
    assert "To undo it until" in english.stdout


# ---------------------------------------------------------------- no rule ids


REPRESENTATIVE = (
    f"/incident-time {CODE} 101 add 15",  # no reason (R4, R15)
    f"/incident-time {CODE} 101 add 200h x",  # too long
    f"/incident-time {CODE} 101 add 15 network",
    f"/incident-time {CODE} 101 subtract 30 x",  # below zero (R4)
    f"/incident-time {CODE} 101 add 167h x",  # above the most (R4)
    f"/incident-time {CODE} all add 10 x",
    f"/reopen {CODE} 101 in 30m x",
    f"/candidate {CODE} 101",
    f"/candidate {CODE} 101 history",
    f"/exam {CODE}",
    f"/notice {CODE}",
    f"/question-error {CODE} nb: Oppgave 3 er feil en: Task 3 is wrong",
    "/undo 1",
    "/nosuch",
)


@pytest.mark.parametrize("language", ["en", "nb"])
def test_r1_to_r15_rule_ids_stay_out_of_replies(world: World, language):
    world.add_test(CODE, start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_candidates(CODE, [101, 102])
    seen = []
    with speaking(language):
        for line in REPRESENTATIVE:
            reply = world.run(line)
            seen.append((line, reply.text, reply.log))
        # After the ordinary end (R5): extra time is refused, the change log of a reopening.
        world.at("2026-12-01 13:30")
        for line in (f"/incident-time {CODE} 102 add 15 x", f"/reopen {CODE} 102 in 30m x"):
            reply = world.run(line)
            seen.append((line, reply.text, reply.log))
    for line, text, log in seen:
        assert not RULE_ID.search(text), (line, text)
        assert not any(RULE_ID.search(entry) for entry in log), (line, log)


def test_a_slow_slack_costs_a_request_at_most_a_second_and_is_asked_once(fake):
    """users.info stands between a slash command and its answer (3 s): it may take at most
    TIMEOUT, a failure answers in English and is not asked again at once."""
    from bot.slack.language import TIMEOUT, SlackLocales

    locales = SlackLocales(
        Settings(_env_file=None, slack_bot_token="xoxb-test-token", slack_api_url=fake.api_url)
    )
    fake.locales[SLACK_NB] = "nb-NO"
    fake.delay = TIMEOUT + 1
    started = time.monotonic()
    assert locales.language(SLACK_NB) is None
    assert time.monotonic() - started < TIMEOUT + 0.5
    fake.delay = 0
    assert locales.language(SLACK_NB) is None  # the failure is kept a while
    assert len(fake.of("users.info")) <= 1
    assert SlackLocales(Settings(_env_file=None)).language(SLACK_NB) is None  # no token
