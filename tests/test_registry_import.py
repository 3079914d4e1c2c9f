"""R11: tests and candidates from the student registry's CSV and XLSX exports."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import OSLO, SUPPORT, TEACHER, oslo
from dbstate import snapshot
from openpyxl import Workbook
from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState

from commands import registry
from commands.context import Ctx
from commands.delivery import attach_file
from commands.errors import InvalidInput
from commands.registry import CANDIDATE_COLUMNS, TEST_COLUMNS, ImportResult
from commands.runner import execute
from store.db import SQLITE_BEGIN, session_scope
from store.models import Candidate, Change, Reopening, Staff, StaffTest
from store.models import Test as ExamTest

T = TypeVar("T")
CODE = "TDT4100-2026H"
TESTS = [
    # code, title, kind, start, end, upload, auto_deliver, teachers
    [CODE, "OOP", "school", "2026-12-01 09:00", "2026-12-01 13:00", "yes", "yes", TEACHER],
    ["TMA4100-2026H", "Calculus", "home", "2026-12-02 09:00", "2026-12-02 15:00", "yes", "no", ""],
]
TESTS[0][7] += " U0TEACHER9"
CANDIDATES = [
    [CODE, "10023", "412 34 567", "a@example.org", "nb", "", "", "", "started"],
    [CODE, "10024", "+46 70 123 45 67", "", "en", "30", "2026-12-03 12:00", "", ""],
    ["TMA4100-2026H", "10023", "", "", "", "0", "", "2026-12-02 12:00", "not_started"],
]


def write_csv(path: Path, header, rows) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, header, rows) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    book.save(path)
    return path


def load(world, kind: str, path: Path) -> ImportResult:
    importer = registry.import_tests if kind == "tests" else registry.import_candidates
    with world.factory() as s:
        result = importer(world.ctx(s), path)
        s.commit()
    return result


@pytest.fixture
def files(tmp_path):
    return (
        write_csv(tmp_path / "tests.csv", TEST_COLUMNS, TESTS),
        write_csv(tmp_path / "candidates.csv", CANDIDATE_COLUMNS, CANDIDATES),
    )


@pytest.fixture
def loaded(world, files):
    world.at("2026-11-30 12:00")
    load(world, "tests", files[0])
    load(world, "candidates", files[1])
    return world


def candidates(world) -> dict[tuple[str, str], Candidate]:
    with world.factory() as s:
        rows = s.execute(select(ExamTest.code, Candidate).join(ExamTest)).all()
        return {(code, c.number): c for code, c in rows}


def test_r11_import_tests_and_candidates_from_csv(world, files):
    """R11: tests with teachers, candidates with normalised phones and office-zone times."""
    world.at("2026-11-30 12:00")
    assert load(world, "tests", files[0]).created == 2
    result = load(world, "candidates", files[1])
    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    with world.factory() as s:
        test = s.scalars(select(ExamTest).where(ExamTest.code == CODE)).one()
        assert (test.start, test.end) == (oslo("2026-12-01 09:00"), oslo("2026-12-01 13:00"))
        assert (test.kind, test.has_upload, test.auto_deliver) == ("school", True, True)
        links = set(s.scalars(select(StaffTest.user_id).where(StaffTest.test_id == test.id)))
        assert links == {TEACHER, "U0TEACHER9"}
        assert s.get(Staff, "U0TEACHER9").role == "teacher"
    found = candidates(world)
    first, second = found[(CODE, "10023")], found[(CODE, "10024")]
    assert (first.phone, first.email, first.status) == ("+4741234567", "a@example.org", "started")
    assert (second.phone, second.language, second.extra_minutes) == ("+46701234567", "en", 30)
    assert second.postponed_deadline == oslo("2026-12-03 12:00")
    assert found[("TMA4100-2026H", "10023")].individual_deadline == oslo("2026-12-02 12:00")
    assert found[("TMA4100-2026H", "10023")].status == "not_started"
    assert all(c.incident_minutes == 0 and len(c.notice_token) >= 32 for c in found.values())


def test_r11_import_from_xlsx_with_date_cells_and_text_cells(world, tmp_path):
    """R11: XLSX exports work with real date cells, text dates and empty trailing columns."""
    start, end = datetime(2026, 12, 1, 9, 0), datetime(2026, 12, 1, 13, 0)
    tests = [[CODE, "OOP", "school", start, end, "yes", "no", TEACHER, None]]
    cands = [[CODE, 10023, 41234567, None, "en", 15, "2026-12-04 10:00", None, "started"]]
    write_xlsx(tmp_path / "tests.xlsx", [*TEST_COLUMNS, None], tests)
    write_xlsx(tmp_path / "candidates.xlsx", CANDIDATE_COLUMNS, cands)
    assert load(world, "tests", tmp_path / "tests.xlsx").created == 1
    assert load(world, "candidates", tmp_path / "candidates.xlsx").created == 1
    with world.factory() as s:
        test = s.scalars(select(ExamTest)).one()
    assert test.end == oslo("2026-12-01 13:00") and not test.auto_deliver
    c = candidates(world)[(CODE, "10023")]
    assert (c.phone, c.extra_minutes, c.language) == ("+4741234567", 15, "en")
    assert c.postponed_deadline == oslo("2026-12-04 10:00")


def test_r11_xlsx_date_cell_in_the_spring_gap_names_its_line(world, tmp_path):
    """R11: a date cell at a time that does not exist names its line; nothing is stored."""
    rows = [
        [CODE, "OOP", "school", datetime(2027, 3, 27, 20, 0), datetime(2027, 3, 28, 1, 0)],
        ["X-1", "X", "school", datetime(2027, 3, 27, 20, 0), datetime(2027, 3, 28, 2, 30)],
    ]
    path = write_xlsx(tmp_path / "tests.xlsx", TEST_COLUMNS[:5], rows)
    with pytest.raises(InvalidInput, match=r"line 3: end: 2027-03-28 02:30 does not exist"):
        load(world, "tests", path)
    with world.factory() as s:
        assert s.scalars(select(ExamTest)).all() == []


def test_r11_importing_the_same_files_again_changes_nothing(loaded, files):
    """R11: repeating an import is safe: no row and no change record differs."""
    before = snapshot(loaded.factory)
    assert load(loaded, "tests", files[0]).unchanged == 2
    again = load(loaded, "candidates", files[1])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert snapshot(loaded.factory) == before


def test_r11_registry_changes_are_applied_and_recorded(loaded, files):
    """R11: a changed extra time or deadline is brought in and recorded before → after."""
    rows = [list(r) for r in CANDIDATES]
    rows[0][5] = "45"
    rows[0][7] = "2026-12-01 15:00"
    write_csv(files[1], CANDIDATE_COLUMNS, rows)
    result = load(loaded, "candidates", files[1])
    assert (result.updated, result.unchanged) == (1, 2)
    c = candidates(loaded)[(CODE, "10023")]
    assert (c.extra_minutes, c.individual_deadline) == (45, oslo("2026-12-01 15:00"))
    with loaded.factory() as s:
        change = s.scalars(select(Change).order_by(Change.id.desc())).first()
    assert change.action == "registry_candidates" and change.reason == "student registry import"
    assert change.before == {"10023": {"extra_minutes": 0, "individual_deadline": None}}
    assert change.after == {
        "10023": {"extra_minutes": 45, "individual_deadline": "2026-12-01T14:00:00+00:00"}
    }


def test_r11_refresh_never_undoes_staff_work_and_statuses_only_move_forward(
    loaded, files, tmp_path
):
    """R11: incident time, reopenings and a staff delivery survive a refresh."""
    loaded.at("2026-12-01 10:00")
    assert loaded.run(f"/incident-time {CODE} 10023 add 20 test reason").ok
    assert loaded.run(f"/reopen {CODE} 10024 until-close test reason").ok
    answer = tmp_path / "answer.pdf"
    answer.write_bytes(b"answer")
    with loaded.factory() as s:
        ctx = Ctx(db_session=s, actor=SUPPORT, tz=OSLO, now=loaded.now)
        attach_file(ctx, test_code="TMA4100-2026H", number="10023", path=answer, reason="mailed in")
        s.commit()
    rows = [list(r) for r in CANDIDATES]
    rows[0][8] = "not_started"  # a stale export
    rows[1][8] = "submitted"  # reopened: the registry must not close it
    rows[2][8] = "started"  # staff delivered: must stay submitted
    write_csv(files[1], CANDIDATE_COLUMNS, rows)
    load(loaded, "candidates", files[1])
    found = candidates(loaded)
    assert found[(CODE, "10023")].incident_minutes == 20
    assert found[(CODE, "10023")].status == "started"
    assert found[(CODE, "10024")].status == "not_started"
    assert found[("TMA4100-2026H", "10023")].status == "submitted"
    with loaded.factory() as s:
        assert s.scalars(select(Reopening)).one().closed_at is None
    # Forward is fine: started → submitted where nothing is open.
    rows[0][8] = "submitted"
    write_csv(files[1], CANDIDATE_COLUMNS, rows)
    load(loaded, "candidates", files[1])
    assert candidates(loaded)[(CODE, "10023")].status == "submitted"


def test_r11_r5_extra_time_is_frozen_after_the_ordinary_end(loaded, files):
    """R11 + R5: after the ordinary end a new extra time is not applied, with a warning;
    deadlines still are."""
    rows = [list(r) for r in CANDIDATES]
    rows[1][5] = "60"
    rows[1][6] = "2026-12-04 12:00"
    write_csv(files[1], CANDIDATE_COLUMNS, rows)
    result = load(loaded.at("2026-12-01 13:15"), "candidates", files[1])
    c = candidates(loaded)[(CODE, "10024")]
    assert c.extra_minutes == 30
    assert c.postponed_deadline == oslo("2026-12-04 12:00")
    assert len(result.warnings) == 1
    assert "10024" in result.warnings[0] and "the ordinary end has passed" in result.warnings[0]
    assert "30 min → 1 h not applied" in result.summary("candidates.csv")


def test_r11_a_bad_row_names_its_line_and_nothing_of_the_file_is_stored(world, files, tmp_path):
    """R11: whole file or nothing."""
    load(world, "tests", files[0])
    rows = [*CANDIDATES, [CODE, "10025", "", "", "de", "", "", "", ""]]
    path = write_csv(tmp_path / "bad.csv", CANDIDATE_COLUMNS, rows)
    before = snapshot(world.factory)
    with pytest.raises(InvalidInput) as error:
        load(world, "candidates", path)
    assert "line 5: language 'de' is not nb or en" in error.value.message
    assert "nothing was imported" in error.value.message
    assert snapshot(world.factory) == before


def test_r11_unknown_columns_are_named(world, tmp_path):
    """R11: unknown columns are an error that names them and lists the right ones."""
    path = write_csv(tmp_path / "tests.csv", [*TEST_COLUMNS, "room", "seat"], [])
    with pytest.raises(InvalidInput) as error:
        load(world, "tests", path)
    assert "unknown columns 'room', 'seat'" in error.value.message
    assert ",".join(TEST_COLUMNS) in error.value.message


def test_r11_refresh_on_demand_reads_the_newest_exports(world, files, tmp_path):
    """R11: `/exam TEST refresh` re-reads the registry folder now (support only)."""
    folder = tmp_path / "registry"
    folder.mkdir()
    write_csv(folder / "tests-2026-11-30.csv", TEST_COLUMNS, TESTS)
    write_csv(folder / "candidates-2026-11-30.csv", CANDIDATE_COLUMNS, CANDIDATES)

    def run(actor: str):
        return execute(
            session_factory=world.factory,
            actor=actor,
            command_line=f"/exam {CODE} refresh",
            tz=OSLO,
            registry_dir=folder,
            now=world.now,
        )

    load(world, "tests", files[0])
    reply = run(SUPPORT)
    assert reply.ok, reply.text
    assert "Imported candidates from candidates-2026-11-30.csv: 3 new" in reply.text
    assert "Candidates: 2" in reply.text
    assert not run(TEACHER).ok


@pytest.fixture
def registry_folder(tmp_path) -> Path:
    folder = tmp_path / "registry"
    folder.mkdir()
    write_csv(folder / "tests-2026-11-30.csv", TEST_COLUMNS, TESTS)
    write_csv(folder / "candidates-2026-11-30.csv", CANDIDATE_COLUMNS, CANDIDATES)
    return folder


def refresh_on_demand(world, folder: Path, actor: str = SUPPORT):
    return execute(
        session_factory=world.factory,
        actor=actor,
        command_line=f"/exam {CODE} refresh",
        tz=OSLO,
        registry_dir=folder,
        now=world.now,
    )


def scheduled_refresh(world, folder: Path) -> str:
    # As the scheduler's registry_job: the refresh is the unit of work's first query.
    with session_scope(world.factory) as s:
        return registry.refresh(Ctx(db_session=s, actor="examdesk", tz=OSLO, now=world.now), folder)


@pytest.mark.parametrize("entry", ["scheduler", "/exam TEST refresh"])
def test_r11_a_refresh_parses_both_exports_before_it_takes_the_write_lock(
    world, files, registry_folder, monkeypatch, entry
):
    """R11: the write lock (SQLite's only one), which every command then waits for, is
    taken after both export files are parsed, so it is held for the writing only."""
    load(world, "tests", files[0])  # /exam TEST refresh needs its test
    happened: list[str] = []
    for name, kind in (("_parse_test", "tests"), ("_parse_candidate", "candidates")):
        parse = getattr(registry, name)
        monkeypatch.setattr(
            registry,
            name,
            lambda row, tz, parse=parse, kind=kind: happened.append(kind) or parse(row, tz),
        )
    engine = world.factory.kw["bind"]

    def on_begin(connection) -> None:
        happened.append(connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE"))

    event.listen(engine, "begin", on_begin)
    try:
        if entry == "scheduler":
            summary = scheduled_refresh(world, registry_folder)
        else:
            reply = refresh_on_demand(world, registry_folder)
            assert reply.ok, reply.text
            summary = reply.text
    finally:
        event.remove(engine, "begin", on_begin)
    assert "Imported tests from tests-2026-11-30.csv: 0 new, 0 updated, 2 unchanged" in summary
    assert "Imported candidates from candidates-2026-11-30.csv: 3 new" in summary
    locked = happened.index("IMMEDIATE")
    parsed = [kind for kind in happened[:locked] if kind in ("tests", "candidates")]
    assert parsed == ["tests"] * len(TESTS) + ["candidates"] * len(CANDIDATES)
    assert "tests" not in happened[locked:] and "candidates" not in happened[locked:]


@dataclass
class Transaction:
    begin: str  # as the SQLite "begin" listener of store.db reads it
    candidate_rows: int = 0  # rows read that carry a candidate's columns
    writes: int = 0


def transactions_of(world, run: Callable[[], T]) -> tuple[T, list[Transaction]]:
    """``run()`` and the transactions it ran, with the candidate rows each one read."""
    engine = world.factory.kw["bind"]
    seen: list[Transaction] = []

    def on_begin(connection) -> None:
        seen.append(Transaction(connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")))

    def on_statement(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            seen[-1].writes += 1

    def count_rows(state: ORMExecuteState):
        described = getattr(state.statement, "column_descriptions", [])
        if not state.is_select or all(d.get("entity") is not Candidate for d in described):
            return None
        # Run here (the transaction begins in it), counted, and handed on as it was.
        frozen = state.invoke_statement().freeze()
        seen[-1].candidate_rows += len(frozen.data)
        return frozen()

    listeners = [
        (engine, "begin", on_begin),
        (engine, "before_cursor_execute", on_statement),
        (world.factory, "do_orm_execute", count_rows),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        return run(), seen
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


@pytest.mark.parametrize("entry", ["scheduler", "/exam TEST refresh", "examdesk import"])
def test_r11_a_refresh_compares_the_registry_before_it_takes_the_write_lock(
    world, files, registry_folder, entry
):
    """R11: the write lock (SQLite's only one, which every command waits for) is held for
    the changes only: which of the export's candidates differ is read in a transaction that
    only reads, and the one that writes reads just the candidates it changes."""
    load(world, "tests", files[0])
    rows = [
        [code, str(10000 + n), "", f"c{n}@example.org", "nb", "0", "", "", "started"]
        for code in (CODE, "TMA4100-2026H")
        for n in range(30)
    ]
    path = write_csv(registry_folder / "candidates-2026-11-30.csv", CANDIDATE_COLUMNS, rows)
    load(world, "candidates", path)
    for n, row in enumerate(rows):
        if n % 10 == 0:
            row[3] = f"new{n}@example.org"
    write_csv(path, CANDIDATE_COLUMNS, rows)

    def run() -> str:
        if entry == "scheduler":
            return scheduled_refresh(world, registry_folder)
        if entry == "examdesk import":
            return load(world, "candidates", path).summary(path.name)
        reply = refresh_on_demand(world, registry_folder)
        assert reply.ok, reply.text
        return reply.text

    summary, seen = transactions_of(world, run)
    assert "Imported candidates from candidates-2026-11-30.csv: 0 new, 6 updated, 54 " in summary
    comparing = [t for t in seen if t.candidate_rows >= len(rows)]
    writing = [t for t in seen if t.writes]
    assert [(t.begin, t.writes) for t in comparing] == [("DEFERRED", 0)]
    assert len(writing) == 1 and writing[0].begin == "IMMEDIATE"
    assert writing[0].candidate_rows == 6
    with world.factory() as s:
        recorded = s.scalars(select(Change).order_by(Change.id.desc()).limit(2)).all()
    assert [(c.action, len(c.after), c.before["10000"], c.after["10000"]) for c in recorded] == [
        ("registry_candidates", 3, {"email": "c0@example.org"}, {"email": "new30@example.org"}),
        ("registry_candidates", 3, {"email": "c0@example.org"}, {"email": "new0@example.org"}),
    ]


def test_r11_changes_made_between_the_comparison_and_the_write_are_kept(
    loaded, files, registry_folder, tmp_path, monkeypatch
):
    """R11: what staff change after the refresh compared the registry and before it writes
    is neither undone nor overwritten (the write checks each candidate it changes again),
    and a candidate another import created meanwhile is not created twice."""
    loaded.at("2026-12-01 10:00")
    rows = [list(r) for r in CANDIDATES]
    rows[0][5] = "10"  # 10023 of CODE: extra time; staff give it incident time meanwhile
    rows[2][3] = "b@example.org"  # 10023 of TMA4100: staff deliver for it meanwhile
    rows[2][8] = "started"
    new = [CODE, "10025", "", "", "en", "", "", "", ""]
    rows.append(new)  # created by another import meanwhile
    write_csv(registry_folder / "candidates-2026-12-01.csv", CANDIDATE_COLUMNS, rows)
    answer = tmp_path / "answer.pdf"
    answer.write_bytes(b"answer")
    compare = registry.find_differing

    def compare_then_others_change(ctx, export):
        compared = compare(ctx, export)
        assert loaded.run(f"/incident-time {CODE} 10023 add 20 test reason").ok
        with loaded.factory() as s:
            staff = Ctx(db_session=s, actor=SUPPORT, tz=OSLO, now=loaded.now)
            attach_file(staff, test_code="TMA4100-2026H", number="10023", path=answer, reason="x")
            s.commit()
        with loaded.factory() as s:
            other = loaded.ctx(s)
            one = write_csv(tmp_path / "one.csv", CANDIDATE_COLUMNS, [new])
            registry.store_candidates(other, compare(other, registry.parse_candidates(one, OSLO)))
            s.commit()
        return compared

    monkeypatch.setattr(registry, "find_differing", compare_then_others_change)
    summary = scheduled_refresh(loaded, registry_folder)
    assert "candidates-2026-12-01.csv: 0 new, 2 updated, 2 unchanged" in summary
    found = candidates(loaded)
    timed = found[(CODE, "10023")]
    assert (timed.extra_minutes, timed.incident_minutes) == (10, 20)
    delivered = found[("TMA4100-2026H", "10023")]
    assert (delivered.email, delivered.status) == ("b@example.org", "submitted")
    assert (CODE, "10025") in found
    with loaded.factory() as s:
        changes = s.scalars(
            select(Change).where(Change.action == "registry_candidates").order_by(Change.id)
        ).all()
    assert [c.after for c in changes[-2:]] == [
        {"10023": {"extra_minutes": 10}},
        {"10023": {"email": "b@example.org"}},
    ]


def test_r11_a_bad_candidates_export_refuses_the_whole_refresh(world, registry_folder):
    """R11: a candidates file with a bad row and a row of an unknown test is refused with
    both problems, and the good tests file of the same refresh is not stored either."""
    rows = [*CANDIDATES, ["NOSUCH-2026H", "10025", "", "", "de", "", "", "", ""]]
    write_csv(registry_folder / "candidates-2026-12-01.csv", CANDIDATE_COLUMNS, rows)
    before = snapshot(world.factory)
    with pytest.raises(InvalidInput) as error:
        scheduled_refresh(world, registry_folder)
    assert error.value.message.startswith("candidates-2026-12-01.csv has 1 bad row (2 problems)")
    assert (
        "line 5: there is no test NOSUCH-2026H; import the tests file first\n"
        "          language 'de' is not nb or en"
    ) in error.value.message
    assert snapshot(world.factory) == before


def test_r11_r15_a_bad_export_is_told_only_to_support_staff(
    world, files, registry_folder, monkeypatch
):
    """R11, R15: `/exam TEST refresh` checks the test and the user's role before it reads
    the registry's files at all, and so before it tells what is wrong with an export."""
    load(world, "tests", files[0])
    read: list[Path] = []
    real_read_rows = registry.read_rows
    monkeypatch.setattr(
        registry, "read_rows", lambda path, *a: read.append(path) or real_read_rows(path, *a)
    )
    write_csv(registry_folder / "candidates-2026-12-01.csv", [*CANDIDATE_COLUMNS, "seat"], [])
    before = snapshot(world.factory)
    refused = refresh_on_demand(world, registry_folder, actor=TEACHER)
    assert not refused.ok and "Only exam support staff may" in refused.text
    assert "seat" not in refused.text and read == []
    unknown = execute(
        session_factory=world.factory,
        actor=SUPPORT,
        command_line="/exam NOSUCH-2026H refresh",
        tz=OSLO,
        registry_dir=registry_folder,
        now=world.now,
    )
    assert not unknown.ok and "NOSUCH-2026H" in unknown.text and "seat" not in unknown.text
    assert read == []
    bad = refresh_on_demand(world, registry_folder)
    assert not bad.ok and "candidates-2026-12-01.csv: unknown column 'seat'" in bad.text
    assert snapshot(world.factory) == before
