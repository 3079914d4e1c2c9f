"""Bounded input, refused clearly with nothing changed (issue 15, item 9): a reason is at most
500 characters, a candidate's total incident time at most 168 h (R4), and candidate lists,
notices and question-error texts have their limits too."""

from __future__ import annotations

from sqlalchemy import func, select

from store.models import Change, QuestionErrorReport


def test_r4_reason_longer_than_500_characters_is_refused_and_changes_nothing(world):
    world.add_test()
    world.add_candidates("TDT4100-2026H", ["101"])
    long = "x" * 501
    for command in (
        f"/incident-time TDT4100-2026H 101 add 15 {long}",
        f"/reopen TDT4100-2026H 101 until-close {long}",
    ):
        refused = world.run(command)
        assert not refused.ok
        assert "The reason is 501 characters long" in refused.text
        assert "shorten the reason to 500 characters or fewer" in refused.text
    with world.factory() as s:
        assert s.scalar(select(func.count()).select_from(Change)) == 0
    assert world.candidate("TDT4100-2026H", "101").incident_minutes == 0
    assert world.run(f"/incident-time TDT4100-2026H 101 add 15 {'x' * 500}").ok


def test_r4_total_incident_time_is_at_most_168_h_however_it_is_added(world):
    world.add_test()
    world.add_candidates("TDT4100-2026H", ["101", "102", "103"])
    assert world.run("/incident-time TDT4100-2026H 101 add 168h power").ok
    # Adding again, alone or in a list: refused whole, with who and the most allowed.
    for command in (
        "/incident-time TDT4100-2026H 101 add 5 power",
        "/incident-time TDT4100-2026H 102,101 add 5 power",
    ):
        refused = world.run(command)
        assert not refused.ok
        assert "above 168 h, the most a candidate can have, for" in refused.text
        assert "for 1 candidate (101 has 168 h)" in refused.text
        assert "Nothing was changed" in refused.text
    for all_ in ({}, {"confirmed": True}):
        refused = world.run("/incident-time TDT4100-2026H all add 1 power", **all_)
        assert not refused.ok and "101 has 168 h" in refused.text
    assert [world.candidate("TDT4100-2026H", n).incident_minutes for n in ("101", "102")] == [
        168 * 60,
        0,
    ]
    # Up to the most is fine, and set replaces the total.
    assert world.run("/incident-time TDT4100-2026H 102 add 167h power").ok
    assert world.run("/incident-time TDT4100-2026H 102 add 60 power").ok
    assert world.run("/incident-time TDT4100-2026H 101 set 2h power").ok
    assert [world.candidate("TDT4100-2026H", n).incident_minutes for n in ("101", "102")] == [
        120,
        168 * 60,
    ]


def test_other_unbounded_input_is_refused_with_how_to_fix_it(world):
    world.add_test()
    world.add_candidates("TDT4100-2026H", ["101"])
    cases = {
        "/incident-time TDT4100-2026H "
        + ",".join(str(n) for n in range(1, 10_002))
        + " add 5 x": "name at most 10000",
        f"/notice TDT4100-2026H {'y' * 2001}": "shorten it to 2000 characters or fewer",
        f"/question-error TDT4100-2026H {'y' * 2001}": "shorten it to 2000 characters or fewer",
    }
    for command, expected in cases.items():
        refused = world.run(command)
        assert not refused.ok and expected in refused.text, refused.text
    with world.factory() as s:
        assert s.scalar(select(func.count()).select_from(Change)) == 0
        assert s.scalar(select(func.count()).select_from(QuestionErrorReport)) == 0


RIGHT_TO_LEFT_OVERRIDE = "\u202e"
FIRST_STRONG_ISOLATE = "\u2068"


def test_r4_r13_a_direction_control_in_a_reason_or_a_text_is_refused_and_changes_nothing(world):
    # An override left open turns around what examdesk writes after it on the line ("… by
    # Kari" in the change log, the candidate's page), so it is refused where it is typed.
    world.add_test()
    world.add_candidates("TDT4100-2026H", ["101"])
    cases = {
        f"/incident-time TDT4100-2026H 101 add 15 power {RIGHT_TO_LEFT_OVERRIDE}3 moor": (
            "The reason holds the invisible character U+202E"
        ),
        f"/reopen TDT4100-2026H 101 until-close upload {FIRST_STRONG_ISOLATE}failed": (
            "The reason holds the invisible character U+2068"
        ),
        f"/notice TDT4100-2026H Task 3{RIGHT_TO_LEFT_OVERRIDE}b: use n = 10": (
            "The notice holds the invisible character U+202E"
        ),
        "/notice TDT4100-2026H nb: Oppgave 3b en: Task\u202a 3b": (
            "The notice holds the invisible character U+202A"
        ),
        "/question-error TDT4100-2026H Task 3b: use\u2067 n = 10": (
            "The text for the candidates holds the invisible character U+2067"
        ),
    }
    for command, expected in cases.items():
        refused = world.run(command)
        assert not refused.ok, command
        assert expected in refused.text, refused.text
        assert "turns around the text shown after it" in refused.text
        nothing = "sent" if command.startswith("/notice") else "changed"
        assert f"Nothing was {nothing}" in refused.text
    for command in list(cases)[:2]:
        assert not world.run(command, confirmed=True).ok
    with world.factory() as s:
        assert s.scalar(select(func.count()).select_from(Change)) == 0
        assert s.scalar(select(func.count()).select_from(QuestionErrorReport)) == 0
    assert world.candidate("TDT4100-2026H", "101").incident_minutes == 0
    # Marks turn nothing around: a right-to-left mark in a reason is kept as typed.
    assert world.run("/incident-time TDT4100-2026H 101 add 15 power \u200fcut").ok
    with world.factory() as s:
        assert s.scalar(select(Change.reason)) == "power \u200fcut"
