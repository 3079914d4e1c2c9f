"""One clock for the whole program, and no test bound to the day it runs."""

from __future__ import annotations

import ast
import json
from datetime import timedelta
from pathlib import Path

import pytest

from store import clock
from tests.conftest import SUPPORT, World

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("bot", "commands", "notifications", "store")
# Calls that read the wall clock; only store/clock.py may make them.
WALL_CLOCK = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time")}


def _wall_clock_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if (name, node.func.attr) in WALL_CLOCK:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_clock_module_reads_the_wall_clock():
    reads = [
        hit
        for folder in PRODUCT
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "store" / "clock.py"
        for hit in _wall_clock_reads(path)
    ]
    assert reads == [], f"read the time through store.clock.now(): {reads}"


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("400d", timedelta(days=400)),
        ("-2h30m", -timedelta(hours=2, minutes=30)),
        ("+90s", timedelta(seconds=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        # A test's processes share its clock to the microsecond.
        ("-86399.250001s", -timedelta(seconds=86399, microseconds=250001)),
    ],
)
def test_shift_forms(text: str, delta: timedelta):
    assert clock.parse_shift(text) == delta
    assert clock.parse_shift(clock.format_shift(delta)) == delta


@pytest.mark.parametrize(
    "text", ["", "abc", "10", "2h-30m", "1y", "d", "1.5h", "1.s", "0.1234567s"]
)
def test_a_malformed_shift_names_the_right_form(text: str):
    with pytest.raises(ValueError, match="such as 400d"):
        clock.parse_shift(text)


def test_a_malformed_shift_is_refused_by_the_cli_without_a_traceback(cli):
    result = cli("staff", "list", env={clock.ENV: "tomorrow"})
    assert result.returncode == 1
    assert "such as 400d, -2h30m or 90s" in result.stderr
    assert "Traceback" not in result.stderr


def test_r5_a_process_the_test_starts_lives_at_the_tests_time(world: World, cli):
    """The world at 10:00 (before the ordinary end): `examdesk run` agrees. Shifted past the
    end, the same command is refused as R5 says."""
    world.add_test("TDT4100-2026H", start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_candidates("TDT4100-2026H", ["1"])
    line = "/incident-time TDT4100-2026H 1 add 5 network outage"
    assert cli("run", "--as", SUPPORT, line).returncode == 0
    assert world.candidate("TDT4100-2026H", "1").incident_minutes == 5
    world.at("2026-12-01 13:20")
    late = cli("run", "--as", SUPPORT, line)
    assert late.returncode == 1 and "has passed" in late.stderr
    status = json.loads(cli("status", "TDT4100-2026H", "1", "--json").stdout)
    assert status["incident_minutes"] == 5


def test_the_suite_clock_follows_the_shift_and_the_world(world: World):
    world.at("2030-06-01 12:00")
    assert abs(clock.now() - world.now) < timedelta(seconds=5)
    assert abs(clock.wall(clock.now()) - (clock.now() - clock.shift())) < timedelta(seconds=1)
