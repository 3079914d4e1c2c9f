"""Delivering answers: automatically at the deadline (R9) and on a candidate's behalf (R10)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from babel.numbers import format_decimal
from sqlalchemy import Select, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from commands import audit, change_log, delivery_queries
from commands.context import Ctx
from commands.errors import InvalidInput, Refused
from commands.language import N_, _, locale
from commands.language import number as number_of
from commands.lookup import get_candidate, get_test, parse_candidate_number
from commands.permissions import require_support
from commands.reopen import close_reopening, end_reopening
from commands.reply import listed
from commands.status import candidate_status
from commands.tell_candidates import tell, told_line
from commands.text import DIRECTION
from commands.timing import active_reopening, timing
from notifications.candidate_messages import DELIVERED
from store.models import Candidate, CandidateStatus, Reopening, Submission, Test, TestKind

MAX_FILE_BYTES = 50 * 1024 * 1024
DELIVER_USAGE = N_(
    "Usage: examdesk deliver TEST CANDIDATE FILE --as USER --reason TEXT\n"
    "  The reason is recorded; the candidate is told it was delivered for them, unless\n"
    "  the reason ends with --quiet."
)
SYSTEM_ACTOR = "examdesk"


@dataclass(frozen=True)
class Delivered:
    test: str
    candidate: str
    reopened: bool


def _awaiting_delivery() -> Select[tuple[Candidate]]:
    """Candidates R9 may still deliver for: started, or open for new delivery; no thesis."""
    active = exists().where(Reopening.candidate_id == Candidate.id, Reopening.closed_at.is_(None))
    return (
        select(Candidate)
        .join(Test, Test.id == Candidate.test_id)
        .where(
            Test.kind != TestKind.THESIS, or_(Candidate.status == CandidateStatus.STARTED, active)
        )
        .options(selectinload(Candidate.reopenings), selectinload(Candidate.test))
    )


@dataclass(frozen=True)
class Scan:
    """What R9 has to do: candidates due now, and the next deadline after now."""

    due: list[int]
    upcoming: datetime | None


def scan(*, db_session: Session, now: datetime) -> Scan:
    """R9 planning from plain rows (commands.delivery_queries), without locks: run it in a
    read-only transaction. `deliver_due` checks each due candidate again under lock, so a
    scan that is a moment old is still safe."""
    due: list[int] = []
    upcoming = None
    for candidate_id, test, reopened, deadline in delivery_queries.awaiting(db_session):
        if not reopened and not test.auto_deliver:
            continue
        if deadline is None:
            continue
        deadline = max(deadline, test.start)  # nothing is delivered before the test starts
        if deadline <= now:
            due.append(candidate_id)
        elif upcoming is None or deadline < upcoming:
            upcoming = deadline
    return Scan(due=due, upcoming=upcoming)


def deliver_due(ctx: Ctx, *, candidate_ids: list[int] | None = None) -> list[Delivered]:
    """R9: deliver every answer whose deadline has come. Safe to run again at any time.

    A started answer is delivered at the candidate's deadline where the test delivers
    automatically; a reopened answer at its reopen deadline even where the test does not;
    no-limit reopenings and thesis tests never. ``candidate_ids`` (from `scan`) limits the
    candidates looked at; each is checked again here, locked.
    """
    db = ctx.db_session
    if candidate_ids is None:
        candidate_ids = scan(db_session=db, now=ctx.now).due
    if not candidate_ids:
        return []
    candidates = db.scalars(
        _awaiting_delivery()
        .where(Test.start <= ctx.now, Candidate.id.in_(candidate_ids))
        .order_by(Candidate.id)
        .with_for_update(of=Candidate, skip_locked=True)
    ).all()
    done = []
    delivered: dict[str, list[tuple[Candidate, dict[str, Any], dict[str, Any]]]] = {}
    for candidate in candidates:
        test = candidate.test
        t = timing(candidate, test)
        if t.reopening is not None:
            if t.reopen_deadline is None or t.reopen_deadline > ctx.now:
                continue
            before = candidate_status(candidate, test, ctx.tz)
            close_reopening(ctx, candidate, t.reopening, choice="current")
            action = "auto_deliver_reopened"
        else:
            if not test.auto_deliver or t.end_time > ctx.now:
                continue
            before = candidate_status(candidate, test, ctx.tz)
            db.add(
                Submission(candidate_id=candidate.id, at=ctx.now, source="automatic", by=ctx.actor)
            )
            candidate.status = CandidateStatus.SUBMITTED
            candidate.submitted_at = ctx.now
            action = "auto_deliver"
        after = candidate_status(candidate, test, ctx.tz)
        delivered.setdefault(action, []).append((candidate, before, after))
        done.append(Delivered(test.code, candidate.number, t.reopening is not None))
    # One write for every candidate rather than a few each: a deadline shared by a whole
    # test holds the write lock (on SQLite, every writer's) for as long as this takes.
    for action, changes in delivered.items():
        audit.record_each(ctx, action=action, reason="deadline reached", changes=changes)
    _post_delivered(ctx, done)
    return done


def _post_delivered(ctx: Ctx, done: list[Delivered]) -> None:
    by_test: dict[str, list[str]] = {}
    for item in done:
        by_test.setdefault(item.test, []).append(
            item.candidate + (" (new delivery closed)" if item.reopened else "")
        )
    change_log.post(
        ctx,
        [
            f"Delivered automatically at the deadline: {code} candidate " + listed(numbers)
            for code, numbers in by_test.items()
        ],
        via="the scheduler",
    )


def _checked_file(path: Path, *, test: Test, candidate: Candidate) -> tuple[int, str]:
    """The file's size and SHA-256, once it is known to be a readable file of at most 50 MB."""
    if not path.is_file():
        raise InvalidInput(
            _("There is no file {path}. Give the path of the answer file.").format(path=path)
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise Refused(
            _(
                "{file} is {size} MB; at most 50 MB can be delivered for a candidate. Open the "
                "candidate for new delivery instead: `/reopen {test} {candidate} in 30m`."
            ).format(
                file=path.name,
                size=format_decimal(round(size / 1024 / 1024, 1), "0.0", locale=locale()),
                test=test.code,
                candidate=candidate.number,
            )
        )
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as error:
        raise InvalidInput(
            _("{file} cannot be read ({error}).").format(file=path.name, error=error.strerror)
        ) from None
    return size, digest.hexdigest()


# Control characters (C0, DEL, C1) and the line and paragraph separators.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check_file_name(name: str) -> None:
    """The file's name is recorded and shown in the change log and the report, in the middle
    of examdesk's own words: no line breaks or other control characters, and nothing that
    turns the words after it around ("answer<U+202E>fdp.zip" would read "answerpdf.zip")."""
    if _BREAKS.search(name):
        raise InvalidInput(
            _(
                "The file's name holds a line break or control character; rename the file and "
                "deliver it again. Nothing was changed."
            )
        )
    turning = DIRECTION.search(name)
    if turning is not None:
        raise InvalidInput(
            _(
                "The file's name holds the invisible character U+{code:04X}, which turns around "
                "the text shown after it; rename the file and deliver it again. Nothing was "
                "changed."
            ).format(code=ord(turning[0]))
        )


def attach_file(ctx: Ctx, *, test_code: str, number: str, path: Path, reason: str) -> str:
    """R10: staff deliver a file for the candidate (at most 50 MB); status becomes submitted."""
    db = ctx.db_session
    require_support(db_session=db, user_id=ctx.actor, doing=_("deliver for a candidate"))
    reason, quiet = audit.require_reason(reason, DELIVER_USAGE)
    _check_file_name(path.name)
    test = get_test(db_session=db, test_code=test_code)
    candidate = get_candidate(
        db_session=db, test=test, number=parse_candidate_number(number), lock=True
    )
    size, sha256 = _checked_file(path, test=test, candidate=candidate)
    before = candidate_status(candidate, test, ctx.tz)
    reopening = active_reopening(candidate)
    if reopening is not None:
        # The staff delivery is the new delivery: it ends the reopening, as closing it would.
        end_reopening(ctx, reopening, choice="current")
    db.add(
        Submission(
            candidate_id=candidate.id,
            at=ctx.now,
            source="staff_file",
            by=ctx.actor,
            file_name=path.name,
            file_size=size,
            sha256=sha256,
        )
    )
    candidate.status = CandidateStatus.SUBMITTED
    candidate.submitted_at = ctx.now
    db.flush()
    audit.record(
        ctx,
        action="deliver_file",
        reason=reason,
        before=before,
        after=candidate_status(candidate, test, ctx.tz) | {"file": path.name},
        candidate=candidate,
    )
    told = 0 if quiet else tell(ctx, test=test, candidates=[candidate], change=DELIVERED)
    told_text = told_line(told, quiet=quiet)
    change_log.post(
        ctx,
        [
            _("{actor} delivered {file} for candidate {candidate} of {test}: {reason}").format(
                actor=f"<@{ctx.actor}>",
                file=path.name,
                candidate=candidate.number,
                test=test.code,
                reason=reason or _("no reason given"),
            )
        ],
        via="examdesk deliver",
        mentions=(ctx.actor,),
    )
    return _(
        "Delivered {file} ({size} bytes) for candidate {candidate} of {test}; the status is "
        "submitted."
    ).format(file=path.name, size=number_of(size), candidate=candidate.number, test=test.code) + (
        f"\n{told_text}" if told_text else ""
    )
