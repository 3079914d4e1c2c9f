"""The change record, readable: `/candidate TEST CANDIDATE history` and `examdesk log` (R15)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import OSLO, OTHER_TEACHER, STRANGER, SUPPORT, TEACHER
from test_slack_app import ephemeral, fake, served  # noqa: F401 - fixtures

from bot import blocks
from commands.registry import CANDIDATE_COLUMNS
from commands.runner import execute
from store import clock

CODE = "TDT4100-2026H"


@pytest.fixture
def exam(world):
    """School exam 09:00–13:00 with upload (ordinary end 13:15), candidates 10023–10025,
    and a day of changes: incident time for one, for a list and for all, then a reopening
    after the ordinary end and its closing."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023", "10024", "10025"])
    steps = [
        ("2026-12-01 10:00", f"/incident-time {CODE} 10023 add 15 network outage"),
        ("2026-12-01 10:05", f"/incident-time {CODE} 10023,10024 add 10 power cut"),
        ("2026-12-01 10:10", f"/incident-time {CODE} all set 30 server down"),
        ("2026-12-01 13:30", f"/reopen {CODE} 10023 in 30m upload failed"),
        ("2026-12-01 13:40", f"/reopen {CODE} 10023 close current"),
    ]
    for when, command in steps:
        reply = world.at(when).run(command, confirmed=True)
        assert reply.ok, reply.text
    return world


def test_r15_history_oldest_first_with_when_who_what_why_before_after(exam):
    """R15, R4, R6, R8: the candidate's own changes and the batches it was in, oldest first,
    each with the office time to the minute, who, what, why and before → after."""
    reply = exam.run(f"/candidate {CODE} 10023 history")
    assert reply.ok, reply.text
    assert reply.kind == "history"
    lines = reply.text.splitlines()
    assert lines[0] == f"Change record of candidate 10023 · {CODE} (oldest first): 5 changes"
    heads = [line for line in lines if line.startswith("• ")]
    assert heads == [
        f"• 2026-12-01 10:00 CET · <@{SUPPORT}> · incident time added · why: network outage",
        f"• 2026-12-01 10:05 CET · <@{SUPPORT}> · incident time added (one change for 2 "
        "candidates) · why: power cut",
        f"• 2026-12-01 10:10 CET · <@{SUPPORT}> · incident time set (one change for 3 "
        "candidates) · why: server down",
        f"• 2026-12-01 13:30 CET · <@{SUPPORT}> · opened for new delivery · why: upload failed",
        f"• 2026-12-01 13:40 CET · <@{SUPPORT}> · new delivery closed, current answer "
        "delivered · why: close current",
    ]
    text = reply.text
    assert "incident time 0 min → 15 min" in text
    assert "incident time 15 min → 25 min" in text
    assert "incident time 25 min → 30 min" in text
    # R7: the reopening's deadline, before → after; R8: closing delivers.
    assert "new delivery none → in until 2026-12-01 14:00 CET" in text
    assert "deadline 2026-12-01 13:45 CET → 2026-12-01 14:00 CET" in text
    assert "status started → submitted" in text
    assert [e["action"] for e in reply.data["entries"]] == [
        "incident_time_add",
        "incident_time_add",
        "incident_time_set",
        "reopen",
        "close_current",
    ]


def test_r15_history_holds_only_the_batches_the_candidate_was_in(exam):
    """R4: 10025 was in `all` only, not in the list of two; its part is its own totals."""
    reply = exam.run(f"/candidate {CODE} 10025 history")
    assert reply.ok, reply.text
    assert reply.data["count"] == 1
    assert "server down" in reply.text and "power cut" not in reply.text
    assert "incident time 0 min → 30 min" in reply.text
    assert "10023" not in reply.text.split("\n", 1)[1]


def test_r15_teacher_of_the_test_may_read_history_others_are_refused(exam):
    """R15: support and the test's teacher see the record; another teacher and a stranger
    are refused, told why."""
    assert exam.run(f"/candidate {CODE} 10023 history", actor=TEACHER).ok
    exam.add_staff(OTHER_TEACHER, "teacher")
    other = exam.run(f"/candidate {CODE} 10023 history", actor=OTHER_TEACHER)
    assert not other.ok and "not registered as a teacher of" in other.text
    stranger = exam.run(f"/candidate {CODE} 10023 history", actor=STRANGER)
    assert not stranger.ok and "not registered as exam support staff or teacher" in stranger.text


@pytest.mark.parametrize(
    "tail, says",
    [
        ("history page 0", "give nothing or `page N`"),
        ("history page two", "give nothing or `page N`"),
        ("history 2", "give nothing or `page N`"),
        ("history page 9", "has 5 changes, so there is 1 page"),
        ("histroy", "only `history` may follow"),
    ],
)
def test_bad_history_requests_say_what_is_wrong(exam, tail, says):
    reply = exam.run(f"/candidate {CODE} 10023 {tail}")
    assert not reply.ok
    assert says in reply.text
    assert "Traceback" not in reply.text


def test_unknown_candidate_history_is_refused_clearly(exam):
    reply = exam.run(f"/candidate {CODE} 99999 history")
    assert not reply.ok and f"Test {CODE} has no candidate 99999" in reply.text


@pytest.fixture
def busy(world):
    """45 changes for candidate 10023, each with a long reason."""
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023"])
    for i in range(45):
        world.now = world.now + timedelta(minutes=1)
        reason = (f"change {i + 1:02d} " + "lorem ipsum dolor sit amet " * 20)[:500]
        assert world.run(f"/incident-time {CODE} 10023 add 1 {reason}").ok
    return world


def test_history_is_paged_newest_page_first_with_the_way_to_the_others(busy):
    """At most 20 changes a reply; without a page the latest, with the command for more."""
    latest = busy.run(f"/candidate {CODE} 10023 history")
    assert latest.ok, latest.text
    assert latest.data | {"entries": None} == {
        "test": CODE,
        "candidate": "10023",
        "page": 3,
        "pages": 3,
        "count": 45,
        "entries": None,
    }
    assert len(latest.data["entries"]) == 5
    assert "changes 41–45 of 45" in latest.text
    assert f"… 40 earlier: `/candidate {CODE} 10023 history page 2`" in latest.text
    assert "later" not in latest.text

    first = busy.run(f"/candidate {CODE} 10023 history page 1")
    assert len(first.data["entries"]) == 20
    assert "change 01" in first.text and "change 20" in first.text
    assert "change 21" not in first.text
    assert f"… 25 later: `/candidate {CODE} 10023 history page 2`" in first.text
    assert "earlier" not in first.text

    middle = busy.run(f"/candidate {CODE} 10023 history page 2")
    assert "… 20 earlier" in middle.text and "… 5 later" in middle.text
    assert "incident time 20 min → 21 min" in middle.text


def test_a_full_history_page_fits_slack_message_limits(busy):
    """FACTS.md: at most 50 blocks a message, a section's text at most 3,000 characters."""
    page = busy.run(f"/candidate {CODE} 10023 history page 1")
    message = blocks.message(page, tz=OSLO)
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        assert len(block["text"]["text"]) <= 3000
    shown = json.dumps(message["blocks"], ensure_ascii=False)
    assert "change 01" in shown and "change 20" in shown


def test_history_masks_contact_data_from_the_registry(world, tmp_path, cli):
    """Privacy: a registry import's phone number and e-mail address appear masked only."""
    world.add_test(CODE)
    world.add_staff(SUPPORT)
    path = tmp_path / "candidates.csv"
    path.write_text(
        ",".join(CANDIDATE_COLUMNS)
        + f"\n{CODE},10023,41234567,kari.nordmann@example.no,nb,30,,,started\n"
    )
    imported = cli("import", "candidates", str(path))
    assert imported.returncode == 0, imported.stderr
    reply = world.run(f"/candidate {CODE} 10023 history")
    assert reply.ok, reply.text
    assert "student registry" in reply.text and "extra time 30 min" in reply.text
    assert "+••••••••67" in reply.text and "k•••@example.no" in reply.text
    for shown in (reply.text, json.dumps(reply.data)):
        assert "41234567" not in shown and "kari.nordmann" not in shown
    log = cli("log", CODE, "10023", "--json")
    assert log.returncode == 0, log.stderr
    assert "41234567" not in log.stdout and "kari.nordmann" not in log.stdout


def test_cli_log_prints_the_whole_record_of_a_test_oldest_first(exam, cli):
    """R15: `examdesk log TEST` lists every change with each candidate's before → after."""
    result = cli("log", CODE)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"Change record of {CODE} (oldest first): 5 changes")
    assert out.index("network outage") < out.index("power cut") < out.index("server down")
    assert out.index("server down") < out.index("upload failed") < out.index("close current")
    assert f"2026-12-01 10:05 CET · {SUPPORT} · incident time added · why: power cut" in out
    assert "10024: incident time 0 min → 10 min" in out
    assert "10025: incident time 0 min → 30 min" in out


def test_cli_log_json_for_one_candidate(exam, cli):
    result = cli("log", CODE, "10024", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["test"] == CODE and data["candidate"] == "10024"
    changes = data["changes"]
    assert [c["reason"] for c in changes] == ["power cut", "server down"]
    first = changes[0]
    assert first["actor"] == SUPPORT
    assert first["at"] == "2026-12-01T10:05:00+01:00"
    assert first["candidates"] == [
        {"candidate": "10024", "before": {"incident_minutes": 0}, "after": {"incident_minutes": 10}}
    ]
    assert first["candidates_touched"] == 2


def test_cli_log_refuses_unknown_test_and_candidate(exam, cli):
    for args, says in (((CODE + "X",), "There is no test"), ((CODE, "99"), "no candidate 99")):
        result = cli("log", *args)
        assert result.returncode == 1
        assert says in result.stderr and "Traceback" not in result.stderr


def test_r15_history_through_slack_is_the_same_text_as_the_cli(served, world):  # noqa: F811
    """The slash door: a signed `/candidate … history` answers with the same text."""
    now = clock.now().astimezone(OSLO).replace(second=0, microsecond=0)
    world.now = now
    start, end = now - timedelta(hours=1), now + timedelta(hours=3)
    world.add_test(CODE, start=f"{start:%Y-%m-%d %H:%M}", end=f"{end:%Y-%m-%d %H:%M}")
    world.add_candidates(CODE, ["101"])
    assert world.run(f"/incident-time {CODE} 101 add 15 network outage").ok
    body = ephemeral(
        served.slack.command(
            "/candidate",
            f"{CODE} 101 history",
            user=TEACHER,
            response_url=served.fake.response_url(),
        )
    )
    same = execute(
        session_factory=world.factory,
        actor=TEACHER,
        command_line=f"/candidate {CODE} 101 history",
        tz=OSLO,
        now=clock.now(),
    )
    assert body["text"] == same.text
    shown = json.dumps(body["blocks"], ensure_ascii=False)
    assert f"<@{SUPPORT}>" in shown and "network outage" in shown
    assert "incident time 0 min → 15 min" in shown
