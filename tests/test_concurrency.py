"""R4 under load: many `examdesk run` processes changing one candidate at once lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

from conftest import OSLO, SUPPORT
from sqlalchemy import select

from store import clock
from store.models import Candidate, Change

CODE = "TDT4100-2026H"
PROCESSES = 50


def test_r4_fifty_concurrent_adds_end_with_exactly_plus_fifty(world, database_url, tmp_path):
    """R4: 50 `add 1` at once → +50, one Change per process, each before → after by one.

    SQLite serialises writers with BEGIN IMMEDIATE and a busy timeout; PostgreSQL locks the
    candidate rows FOR UPDATE.
    """
    now = clock.now().astimezone(OSLO)
    world.add_test(
        CODE,
        start=f"{now - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{now + timedelta(hours=3):%Y-%m-%d %H:%M}",
    )
    world.add_candidates(CODE, ["10023", "10024"])
    env = os.environ | {"DATABASE_URL": database_url, "EXAMDESK_TIMEZONE": "Europe/Oslo"}
    command = f"/incident-time {CODE} 10023 add 1 load test"
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bot.runtime.cli", "run", "--as", SUPPORT, command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    # Generous: on an idle 2-core machine all 50 are done in about 20 s.
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    elapsed = time.monotonic() - started
    failures = [err for code, _, err in results if code != 0]
    assert not failures, failures[:3]
    with world.factory() as s:
        totals = dict(s.execute(select(Candidate.number, Candidate.incident_minutes)).all())
        changes = s.scalars(select(Change).where(Change.action == "incident_time_add")).all()
    assert totals == {"10023": PROCESSES, "10024": 0}
    assert len(changes) == PROCESSES
    # Serialised: every process saw the total the one before it left.
    assert sorted(c.before["10023"] for c in changes) == list(range(PROCESSES))
    assert all(c.after["10023"] == c.before["10023"] + 1 for c in changes)
    print(f"{PROCESSES} concurrent processes finished in {elapsed:.1f} s")
