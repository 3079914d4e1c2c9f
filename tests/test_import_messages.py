"""R11: an import that fails says everything a person needs to fix the file at once: every
problem of every row, in line order, grouped by line; the wrong kind of file named; and the
teacher accounts a tests file creates listed in its summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TEACHER
from dbstate import snapshot
from test_registry_import import CANDIDATES, CODE, TESTS, load, write_csv

from commands.errors import InvalidInput
from commands.registry import CANDIDATE_COLUMNS, MAX_PROBLEMS_SHOWN, TEST_COLUMNS


def refused(world, kind: str, path: Path) -> str:
    before = snapshot(world.factory)
    with pytest.raises(InvalidInput) as error:
        load(world, kind, path)
    assert snapshot(world.factory) == before  # nothing of the file is stored
    return error.value.message


@pytest.fixture
def with_tests(world, tmp_path):
    load(world, "tests", write_csv(tmp_path / "tests.csv", TEST_COLUMNS, TESTS))
    return world


def test_r11_every_problem_of_every_row_by_line_in_the_files_order(with_tests, tmp_path):
    rows = [
        [CODE, "10023", "", "", "", "", "", "", ""],  # line 2: fine
        ["NOPE-2026H", "10024", "", "", "", "", "", "", ""],  # line 3: no such test
        # line 4: six bad cells, each named, in the order of the columns
        [CODE, "A-1", "", "a@b", "de", "-5", "", "2026-02-30 12:00", "done"],
        [CODE, "10023", "", "", "", "", "", "", ""],  # line 5: line 2 again
        ["NOPE-2026H", "x", "", "", "", "", "", "", ""],  # line 6: two problems
    ]
    path = write_csv(tmp_path / "c.csv", CANDIDATE_COLUMNS, rows)
    assert refused(with_tests, "candidates", path).splitlines() == [
        "c.csv has 4 bad rows (10 problems); nothing was imported. Fix them and import the "
        "file again:",
        "  line 3: there is no test NOPE-2026H; import the tests file first",
        "  line 4: candidate 'A-1' is not a candidate number (1 to 12 digits, e.g. 10023)",
        "          email 'a•••@b' is not an e-mail address",
        "          language 'de' is not nb or en",
        "          extra_minutes '-5' is not a whole number of minutes from 0 to 1440",
        "          individual_deadline '2026-02-30 12:00' is not a real date and time",
        "          status 'done' is not one of not_started|started|submitted",
        "  line 5: candidate 10023 of TDT4100-2026H appears twice",
        "  line 6: there is no test NOPE-2026H; import the tests file first",
        "          candidate 'x' is not a candidate number (1 to 12 digits, e.g. 10023)",
    ]


def test_r11_a_tests_row_names_all_its_problems(world, tmp_path):
    row = ["bad code", "T" * 301, "oral", "2026-12-01 9", "", "ja", "nei", "someone"]
    message = refused(world, "tests", write_csv(tmp_path / "t.csv", TEST_COLUMNS, [row]))
    assert message.splitlines() == [
        "t.csv has 1 bad row (8 problems); nothing was imported. Fix it and import the file again:",
        "  line 2: code 'BAD CODE' is not a test code like TDT4100-2026H",
        "          title is 301 characters long; at most 300 fit",
        "          kind 'oral' is not one of school|home|assignment|thesis",
        "          start '2026-12-01 9' is not YYYY-MM-DD HH:MM",
        "          end is empty; write YYYY-MM-DD HH:MM",
        "          upload is 'ja'; write yes or no",
        "          auto_deliver is 'nei'; write yes or no",
        "          teachers someone are not Slack user ids like U0123ABCD",
    ]


def test_r11_one_bad_row_is_one_bad_row(with_tests, tmp_path):
    rows = [[CODE, "10023", "", "", "de", "", "", "", ""]]
    message = refused(
        with_tests, "candidates", write_csv(tmp_path / "c.csv", CANDIDATE_COLUMNS, rows)
    )
    assert message.startswith(
        "c.csv has 1 bad row; nothing was imported. Fix it and import the file again:\n"
    )


def test_r11_at_most_50_problems_shown_and_the_count_of_the_rest(with_tests, tmp_path):
    rows = [[CODE, str(10000 + i), "", "", "de", "", "", "", ""] for i in range(60)]
    rows.insert(0, [CODE, "A", "", "", "fr", "", "", "", ""])  # line 2: two problems
    message = refused(
        with_tests, "candidates", write_csv(tmp_path / "c.csv", CANDIDATE_COLUMNS, rows)
    )
    head, *shown, tail = message.splitlines()
    assert head.startswith("c.csv has 61 bad rows (62 problems)")
    assert len(shown) == MAX_PROBLEMS_SHOWN == 50
    assert shown[-1] == "  line 50: language 'de' is not nb or en"
    assert tail == "  …and 12 more problems in 12 more rows"


def test_r11_a_tests_file_given_as_candidates_is_named_as_such(world, tmp_path):
    tests_file = write_csv(tmp_path / "export.csv", TEST_COLUMNS, TESTS)
    message = refused(world, "candidates", tests_file)
    assert message == (
        "export.csv looks like a tests file (columns code, title, kind, start, end, upload, "
        "auto_deliver, teachers), not a candidates file: use `examdesk import tests "
        "export.csv`. Nothing was imported."
    )
    candidates_file = write_csv(tmp_path / "people.csv", CANDIDATE_COLUMNS, CANDIDATES)
    assert "looks like a candidates file" in refused(world, "tests", candidates_file)
    assert "use `examdesk import candidates people.csv`" in refused(world, "tests", candidates_file)


def test_r11_a_file_of_neither_kind_still_names_its_unknown_columns(world, tmp_path):
    path = write_csv(tmp_path / "x.csv", ["code", "kind", "room"], [])
    assert "unknown column 'room'" in refused(world, "tests", path)


def test_r15_teacher_accounts_the_tests_file_creates_are_listed(world, tmp_path):
    """R15: an account is a permission, so the import says whom it let in."""
    world.add_staff("U0TEACHER9", "support")  # known already: linked, not created
    rows = [row[:] for row in TESTS]
    rows[1][7] = TEACHER
    path = write_csv(tmp_path / "tests.csv", TEST_COLUMNS, rows)
    first = load(world, "tests", path).summary("tests.csv")
    assert (
        f"  new teacher account from the teachers column: {TEACHER} ({CODE}, TMA4100-2026H); "
        "`examdesk staff list` shows every account, `examdesk staff remove USER` removes one"
    ) in first.splitlines()
    assert "U0TEACHER9" not in first
    assert "teacher account" not in load(world, "tests", path).summary("tests.csv")


def test_r11_the_cli_prints_the_problems_and_exits_1(cli, tmp_path):
    path = write_csv(tmp_path / "tests.csv", TEST_COLUMNS, TESTS)
    result = cli("import", "candidates", str(path))
    assert result.returncode == 1
    assert "looks like a tests file" in result.stderr and "Traceback" not in result.stderr
