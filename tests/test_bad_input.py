"""Bad input gets one clear message that names the problem and shows the right form; nothing
is changed and no traceback is shown (commands, import files, and the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import STRANGER, SUPPORT
from dbstate import snapshot
from openpyxl import Workbook

from commands import registry
from commands.errors import CommandError
from commands.registry import CANDIDATE_COLUMNS, TEST_COLUMNS

CODE = "TDT4100-2026H"
TEST_ROW = f"{CODE},OOP,school,2026-12-01 09:00,2026-12-01 13:00,yes,yes,"
CAND_HEADER = ",".join(CANDIDATE_COLUMNS)
TEST_HEADER = ",".join(TEST_COLUMNS)


@pytest.fixture
def exam(world):
    world.add_test(CODE)
    world.add_candidates(CODE, ["10023", "10024"])
    world.run(f"/incident-time {CODE} 10023 add 10 test reason")
    return world


COMMANDS = [
    # (command, what the message must say: the problem, and the right form)
    (
        "/incident-time NOPE-2026H 10023 add 5 test reason",
        ["There is no test NOPE-2026H", "TDT4100-2026H"],
    ),
    (f"/incident-time {CODE} 99999 add 5 test reason", ["has no candidate 99999", f"/exam {CODE}"]),
    (f"/candidate {CODE} 99999", ["has no candidate 99999"]),
    (f"/incident-time {CODE} 10023 add 5x", ["'5x' is not a duration", "1h30m"]),
    (f"/incident-time {CODE} 10023 add -5", ["never negative", "1h30m"]),
    (f"/incident-time {CODE} 10023 add 1,5", ["'1,5' is not a duration"]),
    (f"/incident-time {CODE} 10023 add 100000 test reason", ["far too long", "168 h"]),
    (f"/incident-time {CODE} 10023 add 1000h test reason", ["far too long"]),
    (f"/incident-time {CODE} 10023 add {'9' * 5000}", ["far too long"]),
    (f"/incident-time {CODE} 10023 add", ["Some parts are missing", "Usage: /incident-time"]),
    (f"/incident-time {CODE}", ["Some parts are missing", "Usage: /incident-time"]),
    (f"/incident-time {CODE} 10023 multiply 5", ["'multiply' is not add, subtract or set"]),
    (
        f"/incident-time {CODE} 10023;10024 add 5 test reason",
        ["is not a list of candidates", "10023,10024"],
    ),
    (f"/incident-time {CODE} ²³ add 5 test reason", ["is not a list of candidates"]),
    (f"/incident-time {CODE} 10023 subtract 11 test reason", ["below zero", "set 0"]),
    (f"/reopen {CODE} 10023 at 2026-02-30 10:00 test reason", ["not a date in the calendar"]),
    (
        f"/reopen {CODE} 10023 at 25:00 test reason",
        ["25:00 is not a time of day", "00:00 to 23:59"],
    ),
    (f"/reopen {CODE} 10023 at 2026-12-01 12:60 test reason", ["12:60 is not a time of day"]),
    (f"/reopen {CODE} 10023 at 2026-13-01 12:00 test reason", ["not a date in the calendar"]),
    (f"/reopen {CODE} 10023 at tomorrow", ["is not a date and time", "YYYY-MM-DD HH:MM"]),
    (f"/reopen {CODE} 10023 at 1.12.2026 12:00", ["is not a date and time", "YYYY-MM-DD HH:MM"]),
    (f"/reopen {CODE} 10023 at 0001-01-01 00:30 test reason", ["not a plausible exam date"]),
    (f"/reopen {CODE} 10023 at 9999-12-31 23:59 test reason", ["not a plausible exam date"]),
    (f"/reopen {CODE} 10023 at", ["Say until when", "at 15:30"]),
    (f"/reopen {CODE} 10023 in", ["Say for how long", "in 30m"]),
    (f"/reopen {CODE} 10023 in 0 test reason", ["would close it at once"]),
    (f"/reopen {CODE} 10023 sometime", ["'sometime' is not a way to reopen", "Usage: /reopen"]),
    (f"/reopen {CODE} abc until-close test reason", ["'abc' is not a candidate number", "10023"]),
    (
        f"/reopen {CODE} 10023,10024 until-close test reason",
        ["one candidate at a time", "Usage: /reopen"],
    ),
    (f"/reopen {CODE} all until-close test reason", ["one candidate at a time"]),
    (f"/reopen {CODE} 10023", ["Some parts are missing", "Usage: /reopen"]),
    (f"/reopen {CODE} 10023 close maybe", ["close current", "close reverted"]),
    (f"/reopen {CODE} 10023 in 30 test reason", ["only possible after the ordinary end"]),
    (f"/candidate {CODE}", ["Give a test and one candidate number", "Usage: /candidate"]),
    (f"/candidate {CODE} 10023 10024", ["Too many parts", "Usage: /candidate"]),
    (f"/exam {CODE} now", ["Give one test code", "refresh"]),
    (f"/exam {CODE} refresh", ["No student registry is configured", "examdesk import"]),
    ("/nonsense 1 2", ["There is no command /nonsense", "/incident-time"]),
    ("", ["Empty command", "/reopen"]),
    ("   ", ["Empty command"]),
    (f"/incident-time {CODE} 10023 add 5 \x00", ["control characters"]),
    (f"/incident-time {'X' * 500} 10023 add 5 test reason", ["There is no test XXX", "…"]),
    # Pasted with an invisible character: the message shows where it is.
    (f"/candidate \u200b{CODE} 10023", [f"There is no test <U+200B>{CODE}"]),
    (f"/candidate {CODE} 10023\u200f", ["'10023<U+200F>' is not a candidate number"]),
    (f"/incident-time {CODE} 10023 add 5\ufeff x", ["'5<U+FEFF>' is not a duration"]),
    # Invisible characters alone are no text: nothing to confirm, nothing recorded.
    (f"/notice {CODE} \u200b", ["The notice has no text"]),
    (f"/notice {CODE} nb: \u200b\u2060 en: Task 3", ["The Norwegian text after `nb:` is empty"]),
    (f"/question-error {CODE} \u200b \ufeff", ["The notice has no text"]),
]


@pytest.mark.parametrize(("command", "needles"), COMMANDS)
def test_bad_command_is_refused_clearly_and_changes_nothing(exam, command, needles):
    before = snapshot(exam.factory)
    reply = exam.run(command, confirmed=True)
    assert not reply.ok and reply.kind == "refusal"
    for needle in needles:
        assert needle in reply.text, reply.text
    assert "Traceback" not in reply.text and len(reply.text) < 1200
    assert snapshot(exam.factory) == before


def test_r15_unknown_user_is_refused_and_changes_nothing(exam):
    before = snapshot(exam.factory)
    reply = exam.run(f"/incident-time {CODE} 10023 add 5 test reason", actor=STRANGER)
    assert not reply.ok and "not registered" in reply.text
    assert snapshot(exam.factory) == before


# ---------------------------------------------------------------- import files

GOOD_CANDIDATE = f"{CODE},10025,41234567,,nb,0,,,started"
BAD_FILES = [
    # (kind, file name, content, what the message must say)
    ("tests", "t.csv", f"{TEST_HEADER},room\n{TEST_ROW},A1\n", ["unknown column 'room'"]),
    (
        "tests",
        "t.csv",
        TEST_ROW.join([f"{TEST_HEADER}\n", "\n"]).replace("school", "oral"),
        ["line 2: kind 'oral' is not one of school|home|assignment|thesis"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW.replace('2026-12-01 09:00', '2026-02-30 09:00')}",
        ["line 2: start '2026-02-30 09:00' is not a real date and time"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW.replace('13:00', '25:00')}",
        ["line 2: end '2026-12-01 25:00' is not a real date and time"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW.replace('13:00', '1 pm')}",
        ["line 2: end '2026-12-01 1 pm' is not YYYY-MM-DD HH:MM"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW.replace('13:00', '08:00')}",
        ["line 2: end is not after start"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW}\n{TEST_ROW}\n",
        [f"line 3: test {CODE} appears twice"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\nX-1,X,home,2027-03-28 00:00,2027-03-28 02:30,yes,yes,\n",
        ["line 2: end: 2027-03-28 02:30 does not exist in Europe/Oslo"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW.replace('yes,yes', 'ja,yes')}",
        ["line 2: upload is 'ja'; write yes or no"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW}someone\n",
        ["line 2: teachers someone are not Slack user ids"],
    ),
    (
        "tests",
        "t.csv",
        f"{TEST_HEADER}\n{TEST_ROW.replace('OOP', 'x' * 301)}",
        ["line 2: title is 301 characters long"],
    ),
    ("tests", "t.csv", "code,title,kind\nA,B,school\n", ["missing columns start, end"]),
    ("tests", "t.csv", f"{TEST_HEADER}\n{TEST_ROW},extra\n", ["line 2: more cells than columns"]),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\nNOPE-2026H,10025,,,nb,,,,\n",
        ["line 2: there is no test NOPE-2026H; import the tests file first"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE}\n{GOOD_CANDIDATE}\n",
        [f"line 3: candidate 10025 of {CODE} appears twice"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE.replace('started', 'done')}\n",
        ["line 2: status 'done' is not one of not_started|started|submitted"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE.replace(',0,', ',-5,')}\n",
        ["line 2: extra_minutes '-5' is not a whole number of minutes"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE.replace(',0,', ',²,')}\n",
        ["line 2: extra_minutes '²' is not a whole number"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE.replace('10025', 'A-1')}\n",
        ["line 2: candidate 'A-1' is not a candidate number"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE.replace(',,nb', ',a@b,nb')}\n",
        ["line 2: email 'a•••@b' is not an e-mail address"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE.replace(',,started', ',2026-02-30 12:00,started')}\n",
        ["line 2: individual_deadline '2026-02-30 12:00' is not a real date and time"],
    ),
    (
        "candidates",
        "c.csv",
        f"{CAND_HEADER}\n{GOOD_CANDIDATE}\x00\n",
        ["c.csv line 2: a cell holds a control character (such as NUL)"],
    ),
    (
        "candidates",
        "c.csv",
        "Ã¦".encode("latin-1").join([b"", b"\xff\xfe\n"]),
        ["is not UTF-8 text", "CSV UTF-8"],
    ),
    ("candidates", "c.txt", f"{CAND_HEADER}\n", ["c.txt is neither .csv nor .xlsx"]),
    ("candidates", "c.csv", "", ["c.csv is empty", "header row"]),
    ("candidates", "c.xlsx", "this is no workbook", ["not a readable .xlsx workbook"]),
    ("candidates", "c.csv", ",test,candidate\n,X,1\n", ["column 1 has no name"]),
]


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(("kind", "name", "content", "needles"), BAD_FILES)
def test_r11_bad_import_file_is_refused_whole_with_a_clear_message(
    exam, tmp_path, kind, name, content, needles
):
    path = _write(tmp_path, name, content)
    importer = registry.import_tests if kind == "tests" else registry.import_candidates
    before = snapshot(exam.factory)
    with exam.factory() as s, pytest.raises(CommandError) as refused:
        importer(exam.ctx(s), path)
    for needle in needles:
        assert needle in refused.value.message, refused.value.message
    assert snapshot(exam.factory) == before


def test_r11_bad_xlsx_cell_names_its_line(exam, tmp_path):
    book = Workbook()
    book.active.append(list(CANDIDATE_COLUMNS))
    book.active.append([CODE, 10025, None, None, "nb", 10, None, None, "started"])
    book.active.append([CODE, 10026, None, None, "nb", 10.5, None, None, "started"])
    book.save(tmp_path / "c.xlsx")
    with exam.factory() as s, pytest.raises(CommandError, match=r"line 3: extra_minutes '10\.5'"):
        registry.import_candidates(exam.ctx(s), tmp_path / "c.xlsx")


def test_r11_a_folder_or_missing_file_is_refused(exam, tmp_path):
    (tmp_path / "folder.csv").mkdir()
    for path in (tmp_path / "folder.csv", tmp_path / "missing.csv"):
        with exam.factory() as s, pytest.raises(CommandError, match="There is no file"):
            registry.import_tests(exam.ctx(s), path)


# ---------------------------------------------------------------- the CLI

CLI_CASES = [
    (
        ["run", "--as", SUPPORT, "/incident-time NOPE-2026H 10023 add 5 test reason"],
        "There is no test",
    ),
    (
        ["run", "--as", SUPPORT, f"/reopen {CODE} 10023 at 2026-02-30 10:00 test reason"],
        "not a date in",
    ),
    (["run", "--as", SUPPORT, f"/incident-time {CODE} 10023 add -5"], "never negative"),
    (["run", "--as", STRANGER, f"/incident-time {CODE} 10023 add 5 test reason"], "not registered"),
    (["status", CODE, "99999", "--json"], "has no candidate 99999"),
    (["status", "NOPE-2026H"], "There is no test NOPE-2026H"),
    (["status", CODE, "abc"], "'abc' is not a candidate number"),
    (["import", "candidates", "empty.csv"], "empty.csv is empty"),
    (["import", "candidates", "latin1.csv"], "is not UTF-8 text"),
    (["import", "tests", "missing.xlsx"], "There is no file missing.xlsx"),
    (
        ["deliver", CODE, "10023", "missing.pdf", "--as", SUPPORT, "--reason", "r"],
        "There is no file",
    ),
    (["staff", "add", "bob", "--role", "support"], "'bob' is not a Slack user id"),
    (["staff", "add", "U0BOB1", "--role", "teacher", "--tests", "NOPE-1"], "no test NOPE-1"),
    (["staff", "remove", "U0NOBODY"], "U0NOBODY is not registered"),
]


@pytest.mark.parametrize(("args", "needle"), CLI_CASES)
def test_cli_bad_input_exits_1_with_one_message_and_changes_nothing(
    exam, cli, tmp_path, args, needle
):
    # The cli runs in tmp_path, so relative file names land here.
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "latin1.csv").write_bytes("test,candidate\nTDT4100-2026H,1,Ø\n".encode("latin-1"))
    before = snapshot(exam.factory)
    result = cli(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert needle in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert snapshot(exam.factory) == before


@pytest.mark.parametrize("command", ["/incident-time", "/reopen", "/candidate", "/exam"])
@pytest.mark.parametrize("word", ["help", "HELP", "-h", "--help"])
def test_help_after_any_command_prints_its_usage(exam, command, word):
    reply = exam.run(f"{command} {word}")
    assert reply.ok and reply.kind == "usage"
    assert reply.text.startswith(f"Usage: {command} TEST")
