"""The `examdesk` console entry point, run for real in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import OSLO, STATUS_KEYS, SUPPORT, TEACHER
from sqlalchemy import select

from commands.registry import CANDIDATE_COLUMNS, TEST_COLUMNS
from store import clock, migrate
from store.models import Candidate, Change, Submission

CODE = "TDT4100-2026H"


def local(delta: timedelta) -> str:
    """Now + delta as the office writes it: tests run against the real clock here."""
    moment = (clock.now() + delta).astimezone(OSLO)
    return f"{moment:%Y-%m-%d %H}:00"


def assert_clean(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def running(tmp_path, cli):
    """A school exam running now (upload, auto-deliver) with two candidates, via the CLI."""
    tests = tmp_path / "tests.csv"
    tests.write_text(
        ",".join(TEST_COLUMNS)
        + f"\n{CODE},OOP,school,{local(-timedelta(hours=1))},{local(timedelta(hours=3))},"
        + f"yes,yes,{TEACHER}\n"
    )
    cands = tmp_path / "candidates.csv"
    cands.write_text(
        ",".join(CANDIDATE_COLUMNS)
        + f"\n{CODE},10023,41234567,,nb,30,,,started\n{CODE},10024,,,en,,,,started\n"
    )
    for what, path in (("tests", tests), ("candidates", cands)):
        result = cli("import", what, str(path))
        assert result.returncode == 0, result.stderr
    assert cli("staff", "add", SUPPORT, "--role", "support").returncode == 0
    return tmp_path


def test_db_upgrade_reports_the_latest_revision(cli):
    result = cli("db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"revision {migrate.HEAD} (latest)" in result.stdout


def test_import_prints_a_summary_and_is_safe_to_repeat(running, cli):
    """R11 via the CLI: the second import of the same file changes nothing."""
    result = cli("import", "candidates", str(running / "candidates.csv"))
    assert result.returncode == 0, result.stderr
    assert "0 new, 0 updated, 2 unchanged" in result.stdout


def test_run_exit_codes_done_refused_and_needs_confirmation(running, cli, session_factory):
    """DESIGN: exit 0 done, 1 refused, 2 needs confirmation (nothing changed); --yes applies."""
    done = cli("run", "--as", SUPPORT, f"/incident-time {CODE} 10023 add 15 outage")
    assert done.returncode == 0, done.stderr
    assert "0 min → 15 min" in done.stdout

    refused = cli("run", "--as", SUPPORT, f"/incident-time {CODE} 10023 subtract 20 test reason")
    assert refused.returncode == 1
    assert "below zero" in refused.stderr and refused.stdout == ""
    assert_clean(refused)

    ask = cli("run", "--as", SUPPORT, f"/incident-time {CODE} all add 5 server")
    assert ask.returncode == 2, ask.stderr
    assert "Nothing was changed. Run the same command with --yes" in ask.stdout
    with session_factory() as s:
        assert sorted(s.scalars(select(Candidate.incident_minutes))) == [0, 15]

    yes = cli("run", "--as", SUPPORT, "--yes", f"/incident-time {CODE} all add 5 server")
    assert yes.returncode == 0, yes.stderr
    with session_factory() as s:
        assert sorted(s.scalars(select(Candidate.incident_minutes))) == [5, 20]
        assert len(s.scalars(select(Change).where(Change.actor == SUPPORT)).all()) == 2


def test_run_help_prints_usage(cli):
    result = cli("run", "--as", SUPPORT, "/reopen help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: /reopen TEST CANDIDATE")


def test_status_json_for_a_candidate_and_for_a_test(running, cli):
    """DESIGN: `status --json` keys, ISO 8601 times with the office zone's offset."""
    one = cli("status", CODE, "10023", "--json")
    assert one.returncode == 0, one.stderr
    data = json.loads(one.stdout)
    assert set(STATUS_KEYS) <= set(data)
    assert (data["test"], data["candidate"], data["status"]) == (CODE, "10023", "started")
    assert (data["extra_minutes"], data["incident_minutes"]) == (30, 0)
    assert data["new_delivery"] is None and data["individual_end"] is None
    ordinary = datetime.fromisoformat(data["ordinary_end"])
    end = datetime.fromisoformat(data["end_time"])
    assert ordinary.utcoffset() == ordinary.astimezone(OSLO).utcoffset()
    assert end - ordinary == timedelta(minutes=30)
    assert data["deadline"] == data["end_time"]

    everyone = json.loads(cli("status", CODE, "--json").stdout)
    assert set(everyone) == {"test", "candidates", "notices"} and everyone["test"] == CODE
    assert [c["candidate"] for c in everyone["candidates"]] == ["10023", "10024"]
    assert everyone["candidates"][0] == data


def test_status_text_for_a_candidate_and_a_test(running, cli):
    card = cli("status", CODE, "10023")
    assert card.returncode == 0 and "How the end time is made up" in card.stdout
    assert "41234567" not in card.stdout  # masked even on the terminal
    overview = cli("status", CODE)
    assert overview.returncode == 0 and "Candidates: 2 (not started 0, started 2" in overview.stdout


def test_status_json_while_reopened(tmp_path, cli, world):
    """R7: `new_delivery` {mode, deadline} and `deadline` follow the reopening."""
    now = clock.now().astimezone(OSLO)
    world.add_test(
        CODE,
        start=f"{now - timedelta(hours=6):%Y-%m-%d %H:%M}",
        end=f"{now - timedelta(hours=2):%Y-%m-%d %H:%M}",
    )
    world.add_candidates(CODE, ["10023", "10024"])
    asked_at = clock.now()
    assert cli("run", "--as", SUPPORT, f"/reopen {CODE} 10023 in 30m test reason").returncode == 0
    ask = cli("run", "--as", SUPPORT, f"/reopen {CODE} 10024 no-limit test reason")
    assert ask.returncode == 2
    assert (
        cli(
            "run", "--as", SUPPORT, "--yes", f"/reopen {CODE} 10024 no-limit test reason"
        ).returncode
        == 0
    )
    first, second = json.loads(cli("status", CODE, "--json").stdout)["candidates"]
    assert first["new_delivery"]["mode"] == "in"
    assert first["deadline"] == first["new_delivery"]["deadline"]
    due = datetime.fromisoformat(first["deadline"])
    # 30 minutes from when the command ran (however long the machine took to start it).
    assert asked_at + timedelta(minutes=29) < due <= clock.now() + timedelta(minutes=30)
    assert second["new_delivery"] == {"mode": "no-limit", "deadline": None}
    assert second["deadline"] is None


def test_staff_add_list_remove(running, cli):
    """R15: who may do what is managed from the terminal."""
    added = cli("staff", "add", "U0TEACH77", "--role", "teacher", "--tests", CODE)
    assert added.returncode == 0 and f"U0TEACH77 is now teacher for {CODE}" in added.stdout
    listing = cli("staff", "list")
    assert f"U0TEACH77\tteacher\t{CODE}" in listing.stdout
    assert f"{SUPPORT}\tsupport\t-" in listing.stdout
    assert cli("run", "--as", "U0TEACH77", f"/exam {CODE}").returncode == 0
    removed = cli("staff", "remove", "U0TEACH77")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert "U0TEACH77" not in cli("staff", "list").stdout
    refused = cli("run", "--as", "U0TEACH77", f"/exam {CODE}")
    assert refused.returncode == 1 and "not registered" in refused.stderr


def test_deliver_a_file_for_a_candidate(running, cli, session_factory):
    """R10 via the CLI: the file is delivered and the status becomes submitted."""
    answer = running / "answer.pdf"
    answer.write_bytes(b"%PDF answer")
    result = cli("deliver", CODE, "10024", str(answer), "--as", SUPPORT, "--reason", "by e-mail")
    assert result.returncode == 0, result.stderr
    assert json.loads(cli("status", CODE, "10024", "--json").stdout)["status"] == "submitted"
    big = running / "big.pdf"
    with big.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024 + 1)
    refused = cli("deliver", CODE, "10023", str(big), "--as", SUPPORT, "--reason", "r")
    assert refused.returncode == 1 and "at most 50 MB" in refused.stderr
    assert_clean(refused)
    # The name is shown amid examdesk's words (change log, report): one that turns them
    # around or breaks the line is refused, and nothing is delivered.
    odd_names = {
        "answer\u202efdp.zip": "U+202E",
        "answer\nto all.pdf": "line break",
        "answer\u2028to all.pdf": "line break",
        "answer\x85.pdf": "control character",
    }
    for name, says in odd_names.items():
        odd = running / name
        odd.write_bytes(b"%PDF answer")
        refused = cli("deliver", CODE, "10023", str(odd), "--as", SUPPORT, "--reason", "r")
        assert refused.returncode == 1 and says in refused.stderr, refused.stderr
        assert "rename the file" in refused.stderr
        assert_clean(refused)
    assert json.loads(cli("status", CODE, "10023", "--json").stdout)["status"] != "submitted"
    with session_factory() as s:
        assert [x.file_name for x in s.scalars(select(Submission))] == ["answer.pdf"]


def test_demo_loads_an_exam_day_that_answers_at_once(cli):
    result = cli("demo")
    assert result.returncode == 0, result.stderr
    assert "Imported tests from demo tests: 5 new" in result.stdout
    card = cli("run", "--as", "U0DEMOSUP1", "/candidate DEMO-SCHOOL 10001")
    assert card.returncode == 0, card.stderr
    assert "Candidate 10001 · DEMO-SCHOOL" in card.stdout
    again = cli("demo")
    assert again.returncode == 0 and "0 new" in again.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["db", "downgrade"], "invalid choice: 'downgrade'"),
        (["staff", "add", "U0ABC"], "--role"),
        (["run", "/exam X"], "--as"),
        (["import", "people", "x.csv"], "invalid choice: 'people'"),
    ],
)
def test_unknown_subcommands_exit_1_with_usage(cli, args, needle):
    result = cli(*args)
    assert result.returncode == 1
    assert needle in result.stderr and "usage: examdesk" in result.stderr
    assert_clean(result)


def test_help_exits_0(cli):
    result = cli("--help")
    assert result.returncode == 0
    for word in ("serve", "worker", "db", "import", "staff", "run", "status", "demo"):
        assert word in result.stdout


def test_the_installed_examdesk_script_is_this_cli(database_url, tmp_path):
    """pyproject's console script `examdesk` runs bot.runtime.cli:main."""
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "examdesk"]
    assert script.value == "bot.runtime.cli:main"
    installed = Path(sys.executable).parent / "examdesk"
    assert installed.exists(), "pip install -e . puts `examdesk` next to the interpreter"
    result = subprocess.run(
        [str(installed), "db", "upgrade"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "(latest)" in result.stdout
