"""A demo exam day to try examdesk at once, loaded through the same import as real data."""

from __future__ import annotations

import csv
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from commands import registry, staff
from commands.context import Ctx
from commands.delivery import SYSTEM_ACTOR
from commands.timing import timing
from store.models import Candidate, Submission, Test

SUPPORT_USER = "U0DEMOSUP1"
TEACHER_USER = "U0DEMOTCH1"


def _fmt(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def load(ctx: Ctx) -> str:
    hour = ctx.now.astimezone(ctx.tz).replace(minute=0, second=0, microsecond=0)
    tests = [
        # code, title, kind, start, end, upload, auto_deliver, teachers
        (
            "DEMO-SCHOOL",
            "Demo school exam with upload",
            "school",
            hour - timedelta(hours=1),
            hour + timedelta(hours=3),
            "yes",
            "yes",
            TEACHER_USER,
        ),
        (
            "DEMO-HOME6",
            "Demo 6-hour home exam",
            "home",
            hour - timedelta(hours=2),
            hour + timedelta(hours=4),
            "yes",
            "yes",
            TEACHER_USER,
        ),
        (
            "DEMO-HOME48",
            "Demo 48-hour home exam",
            "home",
            hour - timedelta(hours=20),
            hour + timedelta(hours=28),
            "yes",
            "yes",
            "",
        ),
        (
            "DEMO-PAST",
            "Demo school exam that has just ended",
            "school",
            hour - timedelta(hours=4),
            hour - timedelta(hours=1),
            "yes",
            "yes",
            "",
        ),
        (
            "DEMO-THESIS",
            "Demo master thesis",
            "thesis",
            hour - timedelta(days=120),
            hour + timedelta(days=3),
            "yes",
            "no",
            "",
        ),
    ]
    with tempfile.TemporaryDirectory() as folder:
        tests_file = Path(folder) / "tests.csv"
        with tests_file.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(registry.TEST_COLUMNS)
            for code, title, kind, start, end, upload, auto, teachers in tests:
                writer.writerow([code, title, kind, _fmt(start), _fmt(end), upload, auto, teachers])
        candidates_file = Path(folder) / "candidates.csv"
        with candidates_file.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(registry.CANDIDATE_COLUMNS)
            for code, *_ in tests:
                for i in range(1, 21):
                    number = f"{10000 + i}"
                    status = (
                        "submitted" if i % 7 == 0 else ("not_started" if i == 20 else "started")
                    )
                    extra = 30 if i % 5 == 0 else 0
                    individual = (
                        _fmt(hour + timedelta(days=7)) if code == "DEMO-THESIS" and i == 3 else ""
                    )
                    writer.writerow(
                        [
                            code,
                            number,
                            f"4{1000000 + i * 7919:07d}",
                            f"cand{i}@example.org",
                            "en" if i % 4 == 0 else "nb",
                            extra,
                            "",
                            individual,
                            status,
                        ]
                    )
        lines = [
            registry.import_tests(ctx, tests_file).summary("demo tests"),
            registry.import_candidates(ctx, candidates_file).summary("demo candidates"),
        ]
    _deliver_what_is_due(ctx)
    lines.append(staff.add(ctx, user_id=SUPPORT_USER, role="support", test_codes=[]))
    lines.append(
        staff.add(
            ctx, user_id=TEACHER_USER, role="teacher", test_codes=["DEMO-SCHOOL", "DEMO-HOME6"]
        )
    )
    lines.append(f'Try: .venv/bin/examdesk run --as {SUPPORT_USER} "/candidate DEMO-SCHOOL 10001"')
    return "\n".join(lines)


def _deliver_what_is_due(ctx: Ctx) -> None:
    """Deliveries as they would have happened: the registry says who has submitted, not
    when, so each of those delivered in the exam app half an hour or so into the test; and
    a started answer whose deadline has passed was delivered then (R9), as if examdesk had
    been running all along."""
    candidates = ctx.db_session.scalars(
        select(Candidate)
        .join(Test, Test.id == Candidate.test_id)
        .where(
            Test.code.like("DEMO-%"),
            Candidate.status.in_(("started", "submitted")),
            Candidate.submitted_at.is_(None),
        )
        .options(selectinload(Candidate.test), selectinload(Candidate.reopenings))
    ).all()
    for candidate in candidates:
        test = candidate.test
        if candidate.status == "submitted":
            at, source, by = (
                test.start + timedelta(minutes=30 + int(candidate.number) % 100),
                "candidate",
                candidate.number,
            )
        else:
            at = timing(candidate, test).end_time
            if test.kind == "thesis" or not test.auto_deliver or at > ctx.now:
                continue
            source, by = "automatic", SYSTEM_ACTOR
        candidate.status = "submitted"
        candidate.submitted_at = at
        ctx.db_session.add(Submission(candidate_id=candidate.id, at=at, source=source, by=by))
    ctx.db_session.flush()
