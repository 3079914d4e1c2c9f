"""Tests and candidates from the student registry's export files (R11).

A file is checked whole before anything is stored: a bad row names its line, unknown columns
are named, and nothing of that file is kept. Importing the same file again changes nothing.
A refresh brings in the registry's fields only; incident time, reopenings and deliveries
made by staff are never undone, and statuses only move forward.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands import audit, change_log
from commands.context import Ctx
from commands.errors import InvalidInput
from commands.language import _, ngettext
from commands.language import number as number_of
from commands.lookup import is_candidate_number
from commands.text import CONTROL
from commands.timeparse import format_duration, local_to_utc
from commands.timing import ordinary_end_passed
from notifications.addresses import usable_phone
from notifications.masking import mask_email, mask_phone
from store.db import read_only
from store.models import Candidate, CandidateStatus, Staff, StaffTest, Test, TestKind

T = TypeVar("T")

TEST_COLUMNS = ("code", "title", "kind", "start", "end", "upload", "auto_deliver", "teachers")
TEST_REQUIRED = ("code", "kind", "start", "end")
CANDIDATE_COLUMNS = (
    "test",
    "candidate",
    "phone",
    "email",
    "language",
    "extra_minutes",
    "postponed_deadline",
    "individual_deadline",
    "status",
)
CANDIDATE_REQUIRED = ("test", "candidate")
# The two kinds of export file: name → (columns, required columns).
FILE_KINDS = {
    "tests": (TEST_COLUMNS, TEST_REQUIRED),
    "candidates": (CANDIDATE_COLUMNS, CANDIDATE_REQUIRED),
}
KINDS = tuple(TestKind)
STATUSES = tuple(CandidateStatus)
STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}
LANGUAGES = ("nb", "en")
MAX_EXTRA_MINUTES = 24 * 60
MAX_PROBLEMS_SHOWN = 50
MAX_TITLE = 300  # Test.title
MAX_EMAIL = 320  # Candidate.email

_CODE = re.compile(r"[A-Z0-9][A-Z0-9_.-]{0,63}")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,31}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DIGITS = re.compile(r"[0-9]+")


@dataclass
class ImportResult:
    kind: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)
    # Staff accounts the tests file's teachers column created: user id → test codes.
    new_teachers: dict[str, list[str]] = field(default_factory=dict)

    def summary(self, source: str) -> str:
        kind = _("tests") if self.kind == "tests" else _("candidates")
        head = _(
            "Imported {kind} from {source}: {created} new, {updated} updated, {unchanged} "
            "unchanged."
        ).format(
            kind=kind,
            source=source,
            created=number_of(self.created),
            updated=number_of(self.updated),
            unchanged=number_of(self.unchanged),
        )
        # The notes are the registry's own findings, worded for the exam office (English).
        lines = [head, *("  " + _("note: {note}").format(note=w) for w in self.warnings)]
        if self.new_teachers:
            accounts = ", ".join(
                f"{user} ({', '.join(codes)})" for user, codes in self.new_teachers.items()
            )
            lines.append(
                "  "
                + ngettext(
                    "new teacher account from the teachers column: {accounts}; `examdesk staff "
                    "list` shows every account, `examdesk staff remove USER` removes one",
                    "new teacher accounts from the teachers column: {accounts}; `examdesk staff "
                    "list` shows every account, `examdesk staff remove USER` removes one",
                    len(self.new_teachers),
                ).format(accounts=accounts)
            )
        return "\n".join(lines)


# ---------------------------------------------------------------- reading files


def read_rows(
    path: Path, columns: tuple[str, ...], required: tuple[str, ...]
) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs from a .csv or .xlsx file, headers checked."""
    if not path.is_file():
        raise InvalidInput(f"There is no file {path}. Give the path of a .csv or .xlsx file.")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise InvalidInput(
            f"{path.name} is neither .csv nor .xlsx. Export the file as one of them."
        )
    try:
        header, rows = _read_csv(path) if suffix == ".csv" else _read_xlsx(path)
    except OSError as error:
        raise InvalidInput(f"{path.name} cannot be read ({error.strerror}).") from None
    header = [str(h or "").strip().lower() for h in header]
    while header and header[-1] == "":
        header.pop()  # spreadsheets often carry empty formatted columns at the right
    if "" in header:
        raise InvalidInput(
            f"{path.name}: column {header.index('') + 1} has no name. The columns are: "
            f"{','.join(columns)}. Nothing was imported."
        )
    unknown = [h for h in header if h not in columns]
    missing = [c for c in required if c not in header]
    expected = ",".join(columns)
    if unknown or missing:
        _refuse_other_kind(path, header, columns)
    if unknown:
        raise InvalidInput(
            f"{path.name}: unknown column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}. The columns are: {expected}. Nothing was "
            "imported."
        )
    if missing:
        raise InvalidInput(
            f"{path.name}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}. "
            f"The columns are: {expected}. Nothing was imported."
        )
    if len(set(header)) != len(header):
        raise InvalidInput(f"{path.name}: a column appears twice. Nothing was imported.")
    out = []
    for line, values in rows:
        if all(v in (None, "") for v in values):
            continue
        if len(values) > len(header) and any(v not in (None, "") for v in values[len(header) :]):
            raise InvalidInput(
                f"{path.name} line {line}: more cells than columns. Nothing was imported."
            )
        if any(isinstance(v, str) and CONTROL.search(v) for v in values):
            raise InvalidInput(
                f"{path.name} line {line}: a cell holds a control character (such as NUL); "
                "export the file again as plain CSV UTF-8 or .xlsx. Nothing was imported."
            )
        row = {h: values[i] if i < len(values) else None for i, h in enumerate(header)}
        out.append((line, row))
    return out


def _refuse_other_kind(path: Path, header: list[str], columns: tuple[str, ...]) -> None:
    """A tests file given as candidates (or the other way round) is named as such, not as a
    list of unknown columns."""
    this = next((k for k, (c, _) in FILE_KINDS.items() if c == columns), None)
    for kind, (other_columns, other_required) in FILE_KINDS.items():
        if other_columns == columns:
            continue
        if all(c in header for c in other_required) and sum(
            h in other_columns for h in header
        ) > sum(h in columns for h in header):
            raise InvalidInput(
                f"{path.name} looks like a {kind} file (columns {', '.join(header)}), not a "
                f"{this or 'matching'} file: use `examdesk import {kind} {path.name}`. Nothing "
                "was imported."
            )


def _read_csv(path: Path) -> tuple[list[Any], list[tuple[int, list[Any]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name} is not UTF-8 text. Save it as CSV UTF-8.") from None
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        rows = list(reader)
    except csv.Error as error:
        raise InvalidInput(
            f"{path.name} line {reader.line_num}: {error}; this is not a clean CSV file. "
            "Nothing was imported."
        ) from None
    if not rows:
        raise InvalidInput(f"{path.name} is empty: it needs a header row. Nothing was imported.")
    return rows[0], [(i + 2, r) for i, r in enumerate(rows[1:])]


def _read_xlsx(path: Path) -> tuple[list[Any], list[tuple[int, list[Any]]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds for a damaged file
        raise InvalidInput(f"{path.name} is not a readable .xlsx workbook.") from None
    try:
        sheet = workbook.worksheets[0]
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()
    if not rows:
        raise InvalidInput(f"{path.name} is empty: it needs a header row. Nothing was imported.")
    return rows[0], [(i + 2, r) for i, r in enumerate(rows[1:])]


# ---------------------------------------------------------------- cell parsing


class _BadCell(Exception):
    pass


class _BadRow(Exception):
    """Every problem of one row, in the order of the file's columns."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Cells:
    """Parses one row's cells, keeping every problem rather than stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def get(self, parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except _BadCell as error:
            self.problems.append(str(error))
            return None

    def done(self) -> None:
        if self.problems:
            raise _BadRow(self.problems)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _yes_no(value: Any, column: str) -> bool:
    text = _text(value).lower()
    if text in ("yes", "y"):
        return True
    if text in ("no", "n", ""):
        return False
    raise _BadCell(f"{column} is '{text}'; write yes or no")


def _when(value: Any, column: str, tz: ZoneInfo, *, required: bool) -> datetime | None:
    if isinstance(value, datetime):
        try:
            return local_to_utc(value.date(), value.time().replace(second=0, microsecond=0), tz=tz)
        except InvalidInput as error:
            raise _BadCell(f"{column}: {error.message}") from None
    text = _text(value)
    if not text:
        if required:
            raise _BadCell(f"{column} is empty; write YYYY-MM-DD HH:MM")
        return None
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::00)?$", text)
    if not match:
        raise _BadCell(f"{column} '{text}' is not YYYY-MM-DD HH:MM")
    y, mo, d, h, mi = (int(g) for g in match.groups())
    try:
        return local_to_utc(date(y, mo, d), time(h, mi), tz=tz)
    except ValueError:
        raise _BadCell(f"{column} '{text}' is not a real date and time") from None
    except InvalidInput as error:
        raise _BadCell(f"{column}: {error.message}") from None


# ---------------------------------------------------------------- tests


def _parse_test(row: dict[str, Any], tz: ZoneInfo) -> tuple[Test, tuple[str, ...]]:
    """The test a row describes (not in the session: the import compares it with the stored
    one) and its teachers."""
    cells = _Cells()
    code = cells.get(lambda: _test_code(row))
    title = cells.get(lambda: _title(row))
    kind = cells.get(lambda: _kind(row))
    start = cells.get(lambda: _when(row.get("start"), "start", tz, required=True))
    end = cells.get(lambda: _when(row.get("end"), "end", tz, required=True))
    if start is not None and end is not None and end <= start:
        cells.problems.append("end is not after start")
    upload = cells.get(lambda: _yes_no(row.get("upload"), "upload"))
    auto_deliver = cells.get(lambda: _yes_no(row.get("auto_deliver"), "auto_deliver"))
    teachers = cells.get(lambda: _teachers(row))
    cells.done()
    assert code and title is not None and kind and start and end and teachers is not None
    described = Test(
        code=code,
        title=title,
        kind=TestKind(kind),
        start=start,
        end=end,
        has_upload=bool(upload),
        auto_deliver=bool(auto_deliver),
    )
    return described, teachers


def _test_code(row: dict[str, Any]) -> str:
    code = _text(row.get("code")).upper()
    if not _CODE.fullmatch(code):
        raise _BadCell(f"code '{code[:40]}' is not a test code like TDT4100-2026H")
    return code


def _title(row: dict[str, Any]) -> str:
    title = _text(row.get("title"))
    if len(title) > MAX_TITLE:
        raise _BadCell(f"title is {len(title)} characters long; at most {MAX_TITLE} fit")
    return title


def _kind(row: dict[str, Any]) -> str:
    kind = _text(row.get("kind")).lower()
    if kind not in KINDS:
        raise _BadCell(f"kind '{kind}' is not one of {'|'.join(KINDS)}")
    return kind


def _teachers(row: dict[str, Any]) -> tuple[str, ...]:
    teachers = tuple(_text(row.get("teachers")).split())
    bad = [t for t in teachers if not _SLACK_USER.fullmatch(t)]
    if bad:
        raise _BadCell(f"teachers {', '.join(bad)} are not Slack user ids like U0123ABCD")
    return teachers


@dataclass(frozen=True)
class ParsedTests:
    """A tests export, parsed and checked whole; nothing of it stored yet."""

    path: Path
    tests: list[tuple[Test, tuple[str, ...]]]  # each test with its teachers


def import_tests(ctx: Ctx, path: Path) -> ImportResult:
    return store_tests(ctx, parse_tests(path, ctx.tz))


def parse_tests(path: Path, tz: ZoneInfo) -> ParsedTests:
    """The tests of a file without a bad row (else InvalidInput); no database needed."""
    rows = read_rows(path, TEST_COLUMNS, TEST_REQUIRED)
    parsed, errors = _parse_rows(
        rows,
        lambda row: _parse_test(row, tz),
        key=lambda t: t[0].code,
        name=lambda t: f"test {t[0].code}",
    )
    _raise_if(errors, path)
    return ParsedTests(path=path, tests=list(parsed.values()))


def store_tests(ctx: Ctx, export: ParsedTests) -> ImportResult:
    db = ctx.db_session
    result = ImportResult(kind="tests")
    codes = [test.code for test, _ in export.tests]
    existing = {t.code: t for t in db.scalars(select(Test).where(Test.code.in_(codes)))}
    fields = ("title", "kind", "start", "end", "has_upload", "auto_deliver")
    for item, teachers in export.tests:
        test = existing.get(item.code)
        before: dict[str, Any] = {}
        if test is None:
            test = Test(code=item.code, updated_at=ctx.now)
            db.add(test)
            result.created += 1
        else:
            before = {f: _plain(getattr(test, f)) for f in fields}
        changed = {f: getattr(item, f) for f in fields if before.get(f) != _plain(getattr(item, f))}
        for name, value in changed.items():
            setattr(test, name, value)
        db.flush()
        new_links = _link_teachers(ctx, test, teachers, result)
        if before and not changed and not new_links:
            result.unchanged += 1
            continue
        if before:
            result.updated += 1
        after = {f: _plain(getattr(test, f)) for f in fields}
        test.updated_at = ctx.now
        audit.record(
            ctx,
            action="registry_test",
            reason="student registry import",
            before={k: v for k, v in before.items() if k in changed},
            after={
                **{k: v for k, v in after.items() if k in changed or not before},
                **({"teachers_added": new_links} if new_links else {}),
            },
            test=test,
        )
    return _posted(ctx, result, export.path)


def _link_teachers(
    ctx: Ctx, test: Test, teachers: Iterable[str], result: ImportResult
) -> list[str]:
    """Link the test's teachers, creating a teacher account for a user examdesk does not
    know yet (said in the import's summary: an account is a permission, R15)."""
    db = ctx.db_session
    added = []
    for user in teachers:
        if db.get(Staff, user) is None:
            db.add(Staff(user_id=user, role="teacher", added_at=ctx.now, added_by=ctx.actor))
            db.flush()
            result.new_teachers[user] = []
        if user in result.new_teachers:
            result.new_teachers[user].append(test.code)
        if db.get(StaffTest, (user, test.id)) is None:
            db.add(StaffTest(user_id=user, test_id=test.id))
            added.append(user)
    return added


# ---------------------------------------------------------------- candidates


@dataclass(frozen=True)
class CandidateRow:
    test: str
    number: str
    phone: str | None
    email: str | None
    language: str
    extra_minutes: int
    postponed_deadline: datetime | None
    individual_deadline: datetime | None
    status: str | None
    warning: str | None


def _parse_candidate(row: dict[str, Any], tz: ZoneInfo) -> CandidateRow:
    cells = _Cells()
    test = cells.get(lambda: _candidate_test(row))
    number = cells.get(lambda: _candidate_number(row))
    raw_phone = _text(row.get("phone"))
    phone = usable_phone(raw_phone) if raw_phone else None
    email = cells.get(lambda: _email(row))
    language = cells.get(lambda: _language(row))
    extra_minutes = cells.get(lambda: _extra_minutes(row))
    postponed = cells.get(
        lambda: _when(row.get("postponed_deadline"), "postponed_deadline", tz, required=False)
    )
    individual = cells.get(
        lambda: _when(row.get("individual_deadline"), "individual_deadline", tz, required=False)
    )
    status = cells.get(lambda: _status(row))
    cells.done()
    assert test and number and language and extra_minutes is not None
    warning = None
    if raw_phone and phone is None:
        warning = (
            f"candidate {number} of {test}: phone '{mask_phone(raw_phone)}' is not a usable number"
        )
    return CandidateRow(
        test=test,
        number=number,
        phone=phone,
        email=email,
        language=language,
        extra_minutes=extra_minutes,
        postponed_deadline=postponed,
        individual_deadline=individual,
        status=status,
        warning=warning,
    )


def _candidate_test(row: dict[str, Any]) -> str:
    test = _text(row.get("test")).upper()
    if not test:
        raise _BadCell("test is empty")
    return test


def _candidate_number(row: dict[str, Any]) -> str:
    number = _text(row.get("candidate"))
    if not is_candidate_number(number):
        raise _BadCell(
            f"candidate '{number[:40]}' is not a candidate number (1 to 12 digits, e.g. 10023)"
        )
    return number


def _email(row: dict[str, Any]) -> str | None:
    email = _text(row.get("email")) or None
    if email and (len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email)):
        shown = f"'{mask_email(email[:60])}'" if "@" in email else "(it has no @)"
        raise _BadCell(f"email {shown} is not an e-mail address")
    return email


def _language(row: dict[str, Any]) -> str:
    language = _text(row.get("language")).lower() or "nb"
    if language == "nn":
        language = "nb"  # the exam app has no Nynorsk; Bokmål is the closest
    if language not in LANGUAGES:
        raise _BadCell(f"language '{language}' is not nb or en")
    return language


def _extra_minutes(row: dict[str, Any]) -> int:
    extra_text = _text(row.get("extra_minutes")) or "0"
    if not _DIGITS.fullmatch(extra_text) or int(extra_text) > MAX_EXTRA_MINUTES:
        raise _BadCell(
            f"extra_minutes '{extra_text}' is not a whole number of minutes from 0 to "
            f"{MAX_EXTRA_MINUTES}"
        )
    return int(extra_text)


def _status(row: dict[str, Any]) -> str | None:
    status = _text(row.get("status")).lower() or None
    if status is not None and status not in STATUSES:
        raise _BadCell(f"status '{status}' is not one of {'|'.join(STATUSES)}")
    return status


@dataclass(frozen=True)
class ParsedCandidates:
    """A candidates export, parsed; nothing of it stored yet. Its bad rows are told together
    with the rows naming a test that does not exist, which only the database knows
    (``store_candidates``)."""

    path: Path
    candidates: list[CandidateRow]
    problems: list[tuple[int, str]]  # (line, problem)
    test_codes: list[tuple[int, str]]  # (line, the test the row names, "" for none)
    # Per test code, the numbers of the rows that differ from the database or are not in it
    # (``find_differing``); the import looks at only these. A test without an entry has
    # all its rows looked at.
    differing: dict[str, frozenset[str]] = field(default_factory=dict)


def import_candidates(ctx: Ctx, path: Path) -> ImportResult:
    return store_candidates(ctx, find_differing(ctx, parse_candidates(path, ctx.tz)))


def parse_candidates(path: Path, tz: ZoneInfo) -> ParsedCandidates:
    """The candidates of a file (InvalidInput for a file that cannot be read as one); no
    database needed."""
    rows = read_rows(path, CANDIDATE_COLUMNS, CANDIDATE_REQUIRED)
    parsed, problems = _parse_rows(
        rows,
        lambda row: _parse_candidate(row, tz),
        key=lambda c: (c.test, c.number),
        name=lambda c: f"candidate {c.number} of {c.test}",
    )
    return ParsedCandidates(
        path=path,
        candidates=list(parsed.values()),
        problems=problems,
        test_codes=[(line, _text(row.get("test")).upper()) for line, row in rows],
    )


def _posted(ctx: Ctx, result: ImportResult, path: Path) -> ImportResult:
    """An import that changed something is in the change log like any change."""
    if result.created or result.updated:
        # A Slack user (`/exam TEST refresh`) is named as one; the scheduler and a terminal
        # user (cli:NAME) as they are.
        slack_user = ctx.actor[:1] in ("U", "W") and ":" not in ctx.actor
        change_log.post(
            ctx,
            [
                f"{f'<@{ctx.actor}>' if slack_user else ctx.actor} imported {result.kind} from "
                f"{path.name}: {result.created} new, {result.updated} updated"
            ],
            via="the student registry",
            mentions=(ctx.actor,) if slack_user else (),
        )
    return result


REGISTRY_FIELDS = (
    "phone",
    "email",
    "language",
    "extra_minutes",
    "postponed_deadline",
    "individual_deadline",
)


def store_candidates(ctx: Ctx, export: ParsedCandidates) -> ImportResult:
    db = ctx.db_session
    codes = sorted({code for _, code in export.test_codes} - {""})
    tests = {t.code: t for t in db.scalars(select(Test).where(Test.code.in_(codes)))}
    # The test column comes first, so its problem does too (_raise_if's sort keeps the order).
    errors = [
        (line, f"there is no test {code[:40]}; import the tests file first")
        for line, code in export.test_codes
        if code and code not in tests
    ]
    _raise_if(errors + export.problems, export.path)
    result = ImportResult(kind="candidates")
    by_test: dict[str, list[CandidateRow]] = {}
    for item in export.candidates:
        by_test.setdefault(item.test, []).append(item)
        if item.warning:
            result.warnings.append(item.warning + "; no SMS can reach it")
    for code, rows in by_test.items():
        test = tests[code]
        numbers = export.differing.get(code)
        existing = _load_candidates(db, test, numbers)
        closed = ordinary_end_passed(test, ctx.now)
        before_all: dict[str, Any] = {}
        after_all: dict[str, Any] = {}
        for item in rows:
            candidate = existing.get(item.number)
            if candidate is None and numbers is not None and item.number not in numbers:
                # Found as the export has it (find_differing); candidates are never removed.
                result.unchanged += 1
                continue
            if candidate is None:
                candidate = Candidate(
                    test_id=test.id,
                    number=item.number,
                    incident_minutes=0,
                    status=item.status or CandidateStatus.NOT_STARTED,
                    notice_token=secrets.token_urlsafe(32),
                    **{f: getattr(item, f) for f in REGISTRY_FIELDS},
                )
                db.add(candidate)
                result.created += 1
                after_all[item.number] = {
                    f: _plain(getattr(item, f)) for f in (*REGISTRY_FIELDS, "status")
                } | {"status": candidate.status}
                continue
            changed = _apply_registry(candidate, item, closed, result, test)
            if changed:
                result.updated += 1
                before_all[item.number] = {k: v[0] for k, v in changed.items()}
                after_all[item.number] = {k: v[1] for k, v in changed.items()}
            else:
                result.unchanged += 1
        if after_all:
            db.flush()
            audit.record(
                ctx,
                action="registry_candidates",
                reason="student registry import",
                before=before_all,
                after=after_all,
                test=test,
                batch=str(uuid.uuid4()),
            )
            before_all, after_all = {}, {}
    db.flush()
    return _posted(ctx, result, export.path)


def find_differing(ctx: Ctx, export: ParsedCandidates) -> ParsedCandidates:
    """``export`` with the rows of each test that differ from the database or are not in it.

    A refresh brings the whole registry and mostly finds every candidate as it was; comparing
    them all took most of the time the import held the write lock (on SQLite the only one:
    every command waits for it). So, called before the command's first statement, this reads
    in a transaction of its own that takes no lock (called later, in the command's
    transaction, which sees the command's own changes), and the write transaction loads
    only the candidates found here and checks each one again (``_apply_registry``).

    Nothing committed in between is undone or missed. A row found differing is loaded as it
    is now. A row found as the export has it is one the import leaves alone; what can change
    it meanwhile is a staff change (which never touches the registry's fields, and statuses
    move back only by staff undoing a reopening), an erasure (retention) or another import,
    and each stands as if made just after this import. The next refresh compares again."""
    db = ctx.db_session
    own = not db.in_transaction()
    if own:
        read_only(db)
    try:
        stored = db.execute(
            select(
                Test.code,
                Candidate.number,
                Candidate.status,
                *(getattr(Candidate, name) for name in REGISTRY_FIELDS),
            )
            .join(Test, Test.id == Candidate.test_id)
            .where(Test.code.in_(sorted({item.test for item in export.candidates})))
        ).all()
    finally:
        if own:
            db.rollback()  # it only read; the import's writes begin a transaction of their own
    known = {(row.code, row.number): row for row in stored}
    differing: dict[str, set[str]] = {row.code: set() for row in stored}
    for item in export.candidates:
        row = known.get((item.test, item.number))
        if item.test in differing and (
            row is None
            or any(getattr(row, name) != getattr(item, name) for name in REGISTRY_FIELDS)
            or (item.status and STATUS_RANK[item.status] > STATUS_RANK[row.status])
        ):
            differing[item.test].add(item.number)
    return replace(export, differing={code: frozenset(n) for code, n in differing.items()})


def _load_candidates(
    db: Session, test: Test, numbers: frozenset[str] | None
) -> dict[str, Candidate]:
    """``test``'s candidates of ``numbers`` (None: all of them), by number."""
    query = select(Candidate).where(Candidate.test_id == test.id)
    if numbers is not None:
        if not numbers:
            return {}
        query = query.where(Candidate.number.in_(sorted(numbers)))
    return {c.number: c for c in db.scalars(query)}


def _apply_registry(
    candidate: Candidate, item: CandidateRow, closed: bool, result: ImportResult, test: Test
) -> dict[str, tuple[Any, Any]]:
    changed: dict[str, tuple[Any, Any]] = {}
    for name in REGISTRY_FIELDS:
        old, new = getattr(candidate, name), getattr(item, name)
        if old == new:
            continue
        if name == "extra_minutes" and closed:
            # R5: after the ordinary end extra time is frozen; staff must reopen instead.
            result.warnings.append(
                f"candidate {item.number} of {test.code}: extra time "
                f"{format_duration(old)} → {format_duration(new)} not applied, the ordinary end "
                "has passed; reopen the candidate if needed"
            )
            continue
        setattr(candidate, name, new)
        changed[name] = (_plain(old), _plain(new))
    # Statuses only move forward, so a stale export never undoes a delivery.
    if (
        item.status
        and STATUS_RANK[item.status] > STATUS_RANK[candidate.status]
        and not any(r.closed_at is None for r in candidate.reopenings)
    ):
        changed["status"] = (candidate.status, item.status)
        candidate.status = item.status
    return changed


# ---------------------------------------------------------------- shared


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _parse_rows(
    rows: list[tuple[int, dict[str, Any]]],
    parse: Callable[[dict[str, Any]], T],
    *,
    key: Callable[[T], Hashable],
    name: Callable[[T], str],
) -> tuple[dict[Any, T], list[tuple[int, str]]]:
    """Every row parsed, or every problem with its line: a file is taken whole or not at all."""
    parsed: dict[Any, T] = {}
    errors: list[tuple[int, str]] = []
    for line, row in rows:
        try:
            item = parse(row)
        except _BadRow as bad:
            errors.extend((line, problem) for problem in bad.problems)
            continue
        if key(item) in parsed:
            errors.append((line, f"{name(item)} appears twice"))
        parsed[key(item)] = item
    return parsed, errors


def _raise_if(errors: list[tuple[int, str]], path: Path) -> None:
    """Every problem, by line in the file's order, the first MAX_PROBLEMS_SHOWN of them."""
    if not errors:
        return
    by_line: dict[int, list[str]] = {}
    for line, problem in sorted(errors, key=lambda e: e[0]):
        by_line.setdefault(line, []).append(problem)
    rows, problems = len(by_line), len(errors)
    shown: list[str] = []
    budget = MAX_PROBLEMS_SHOWN
    rows_shown = 0
    for line, items in by_line.items():
        if budget <= 0:
            break
        label = f"line {line}: "
        for i, problem in enumerate(items[:budget]):
            shown.append(f"  {label if i == 0 else ' ' * len(label)}{problem}")
        budget -= len(items)
        rows_shown += 1
    rest = problems - min(problems, MAX_PROBLEMS_SHOWN)
    tail = []
    if rest:
        more_rows = rows - rows_shown
        tail.append(
            f"  …and {rest} more problem{'s' if rest > 1 else ''}"
            + (f" in {more_rows} more row{'s' if more_rows > 1 else ''}" if more_rows else "")
        )
    counted = f"{rows} bad row{'s' if rows > 1 else ''}"
    if problems > rows:
        counted += f" ({problems} problems)"
    raise InvalidInput(
        f"{path.name} has {counted}; nothing was imported. Fix {'them' if rows > 1 else 'it'} "
        "and import the file again:\n" + "\n".join(shown + tail)
    )


def newest_export(folder: Path, prefix: str) -> Path | None:
    """The newest ``tests*`` or ``candidates*`` file the registry has dropped in ``folder``."""
    files = [
        p
        for p in folder.glob(f"{prefix}*")
        if p.suffix.lower() in (".csv", ".xlsx") and p.is_file()
    ]
    return max(files, key=lambda p: (p.stat().st_mtime, p.name)) if files else None


@dataclass(frozen=True)
class Exports:
    """The newest tests and candidates exports of the registry folder, parsed (None: the
    folder has no such file)."""

    folder: Path
    tests: ParsedTests | None
    candidates: ParsedCandidates | None


def read_exports(ctx: Ctx, folder: Path) -> Exports:
    """Both exports read, parsed and compared with the database (``find_differing``), before
    the command's first statement: that statement takes the write lock (SQLite), which every
    other command then waits for, and the lock should not be held while up to 10,000 rows
    are parsed or compared."""
    if not folder.is_dir():
        raise InvalidInput(f"The registry folder {folder} does not exist. Check REGISTRY_DIR.")
    tests = newest_export(folder, "tests")
    candidates = newest_export(folder, "candidates")
    return Exports(
        folder=folder,
        tests=parse_tests(tests, ctx.tz) if tests else None,
        candidates=(
            find_differing(ctx, parse_candidates(candidates, ctx.tz)) if candidates else None
        ),
    )


def apply_exports(ctx: Ctx, exports: Exports) -> str:
    """Store the exports, the tests first (the candidates' tests may be new); the summary."""
    lines = []
    if exports.tests is None:
        lines.append(f"No tests file in {exports.folder}.")
    else:
        lines.append(store_tests(ctx, exports.tests).summary(exports.tests.path.name))
    if exports.candidates is None:
        lines.append(f"No candidates file in {exports.folder}.")
    else:
        stored = store_candidates(ctx, exports.candidates)
        lines.append(stored.summary(exports.candidates.path.name))
    return "\n".join(lines)


def refresh(ctx: Ctx, folder: Path) -> str:
    """Re-import the newest tests and candidates exports from ``folder`` (R11)."""
    return apply_exports(ctx, read_exports(ctx, folder))
