"""README.md's set-up and "Try the commands" run as written, against the demo on a fixed
day, and print what README shows: the page cannot drift from the program.

`make run` is run as its Makefile recipe says (`examdesk demo`, then `examdesk serve`, left
running while the commands are tried, as in a second terminal); `make test` is this suite.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import httpx
from conftest import move_clock, oslo
from sqlalchemy import select
from test_server import Process, free_port

from bot.cli import build_parser
from store.models import Candidate
from store.models import Test as ExamTest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
# The demo day: any fixed moment does, so that the output is the same whenever CI runs.
DEMO_DAY = "2026-12-01 10:20"
EXAMDESK = ".venv/bin/examdesk"


def section(title: str) -> str:
    """The README's text from the heading ``title`` up to the next heading of its level."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", README, flags=re.MULTILINE)
    assert match, f"README has no heading {title!r}"
    level = match.group(1)
    rest = README[match.end() :]
    end = re.search(rf"^{level} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def commands(text: str) -> list[list[str]]:
    """Each command line of the section's ```sh blocks, split as a shell would."""
    lines = [line for block in blocks(text, "sh") for line in block.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def recipe(target: str) -> list[list[str]]:
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", MAKEFILE, flags=re.MULTILINE)
    assert match, f"Makefile has no target {target}"
    return [shlex.split(line.strip()) for line in match.group(1).splitlines()]


SETUP = section("Set-up: two commands")


def test_setup_shows_make_run_and_make_test_and_the_commands_to_try():
    shown = commands(SETUP)
    assert shown[:2] == [["make", "run"], ["make", "test"]]
    assert shown[2:] and all(c[0] == EXAMDESK for c in shown[2:]), shown
    # `make test` is the suite this test is part of; CI runs it (.ci/run).
    assert recipe("test") == [["$(BIN)/python", "-m", "pytest", "-n", "2", "-q"]]
    assert "make --no-print-directory test" in (ROOT / ".ci" / "run").read_text()


def test_every_command_of_the_cli_table_exists():
    table = section("Command line")
    shown = set(re.findall(r"^\| `examdesk ([a-z]+)", table, flags=re.MULTILINE))
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert "doctor" in shown
    assert shown <= set(choices), shown - set(choices)


def _serve_env(database_url: str) -> dict[str, str]:
    prefixes = ("SLACK_", "TWILIO_", "SMTP", "MAIL_", "WEBHOOK_", "REGISTRY_", "PUBLIC_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | {"DATABASE_URL": database_url, "PORT": str(free_port())}


def test_make_run_then_the_commands_print_what_the_readme_shows(
    cli, database_url, session_factory, tmp_path: Path
):
    def at_demo_day() -> None:
        # Every command at the same minute of the same day, however long the one before took.
        move_clock(oslo(DEMO_DAY))

    run_recipe = recipe("run")
    assert [c[1:] for c in run_recipe] == [["demo"], ["serve"]]
    assert all(c[0] == "$(BIN)/examdesk" for c in run_recipe)

    at_demo_day()
    demo = cli("demo")
    assert demo.returncode == 0, demo.stderr
    hint = re.search(r"^Try: (.*)$", demo.stdout, flags=re.MULTILINE)
    assert hint, demo.stdout
    tried = [shlex.split(hint.group(1))]

    server = Process(_serve_env(database_url), tmp_path)
    try:
        health = server.wait_healthy()
        assert health.status_code == 200
        assert health.json()["status"] == "ok" and health.json()["slack"] == "off"
        with session_factory() as s:
            past = s.scalars(
                select(Candidate.status).join(ExamTest).where(ExamTest.code == "DEMO-PAST")
            ).all()
        assert "started" not in past  # delivered at their deadlines (R9) before anyone asks

        outputs = []
        for command in [*tried, *commands(SETUP)[2:]]:
            assert command[0] == EXAMDESK
            at_demo_day()
            result = cli(*command[1:])
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            outputs.append((command[1:], result.stdout))
        assert httpx.get(f"{server.url}/healthz", timeout=5).json()["status"] == "ok"
    finally:
        assert server.stop() == 0
    log = server.output()
    assert log.count("What is live:") == 1
    assert "Slack is off (SLACK_BOT_TOKEN is not set)" in log
    assert "WARNING" not in log and "Traceback" not in log, log

    # The README's JSON is what the status command printed, key for key.
    (status,) = [out for args, out in outputs if args == ["status", "DEMO-PAST", "10003", "--json"]]
    assert json.loads(status) == status_example()
    assert outputs[0][1].startswith("Candidate 10001 · DEMO-SCHOOL")  # the demo's hint


def status_example() -> dict:
    (shown,) = blocks(section("`examdesk status TEST CANDIDATE --json`"), "json")
    return json.loads(shown)


def test_times_in_the_readme_example_are_to_the_minute():
    example = status_example()
    times = [example[k] for k in ("exam_end", "ordinary_end", "end_time", "submitted_at")]
    times += [example["deadline"], example["new_delivery"]["deadline"]]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00\+01:00", t) for t in times)
