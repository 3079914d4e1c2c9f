"""What both benchmarks share: a fast seeded database, the server and worker as subprocesses,
percentiles, the machine description and the result table."""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from store import clock

ROOT = Path(__file__).resolve().parent.parent
# The loopback fakes of Slack and Twilio live with the tests; they are not a package.
for path in (str(ROOT), str(ROOT / "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

from fake_slack import FakeSlack  # noqa: E402
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Report  # noqa: E402
from slack_signing import SECRET, SlackSender  # noqa: E402
from sqlalchemy import Engine, insert  # noqa: E402

from store import migrate  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.models import Candidate, Staff, Test  # noqa: E402

__all__ = [
    "ACCOUNT_SID",
    "AUTH_TOKEN",
    "SECRET",
    "FakeSlack",
    "FakeTwilio",
    "Report",
    "SlackSender",
]
SUPPORT_USER = "U0BENCHSUP"
PER_TEST = 2000


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); p99 of 200 samples is the 198th value."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_code(index: int) -> str:
    return f"BENCH{index:03d}-2026H"


def phone(n: int) -> str:
    """A distinct valid Norwegian mobile number (E.164) per candidate."""
    return f"+474{n:07d}"


@dataclass
class Database:
    url: str
    engine: Engine
    tests: int
    per_test: int
    scratch: tempfile.TemporaryDirectory | None

    @property
    def candidates(self) -> int:
        return self.tests * self.per_test

    def close(self) -> None:
        self.engine.dispose()
        if self.scratch is not None:
            self.scratch.cleanup()


def create_database(
    *, database_url: str | None, tests: int, per_test: int = PER_TEST, kind: str = "school"
) -> Database:
    """A migrated database holding ``tests`` × ``per_test`` candidates, written with Core
    executemany (the CSV import would validate every row and take minutes for 100,000).

    The tests are running now: the ordinary end is hours away, so every command is allowed.
    """
    scratch = None
    if database_url is None:
        scratch = tempfile.TemporaryDirectory(prefix="examdesk-bench-")
        database_url = f"sqlite:///{scratch.name}/bench.db"
    else:
        _reset_postgres(database_url)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    now = clock.now().replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            insert(Staff),
            [{"user_id": SUPPORT_USER, "role": "support", "added_at": now, "added_by": "bench"}],
        )
        test_ids = []
        for index in range(tests):
            test_ids.append(
                conn.execute(
                    insert(Test)
                    .values(
                        code=test_code(index),
                        title=f"Benchmark exam {index}",
                        kind=kind,
                        start=now - timedelta(hours=1),
                        end=now + timedelta(hours=3),
                        has_upload=True,
                        auto_deliver=False,
                        updated_at=now,
                    )
                    .returning(Test.id)
                ).scalar_one()
            )
        serial = 0
        for test_id in test_ids:
            rows = []
            for n in range(per_test):
                serial += 1
                rows.append(
                    {
                        "test_id": test_id,
                        "number": str(10000 + n),
                        "phone": phone(serial),
                        "email": f"c{serial}@example.org",
                        "language": "en" if n % 2 else "nb",
                        "extra_minutes": 15 if n % 20 == 0 else 0,
                        "postponed_deadline": None,
                        "individual_deadline": None,
                        "incident_minutes": 0,
                        "status": "started",
                        "submitted_at": None,
                        "notice_token": secrets.token_urlsafe(32),
                    }
                )
            conn.execute(insert(Candidate), rows)
    if engine.dialect.name == "sqlite":
        # Outside SQLAlchemy's transaction (store.db begins every one with BEGIN IMMEDIATE).
        raw = engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return Database(database_url, engine, tests, per_test, scratch)


def _reset_postgres(url: str) -> None:
    """A benchmark database starts empty: drop and recreate it (it is the bench's own)."""
    from sqlalchemy import create_engine, make_url, text

    parsed = make_url(url)
    name = parsed.database
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


class Child:
    """A subprocess of ours with its output in a file (a pipe nobody reads would block it)."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        # Closed (and removed) by stop(); the child writes to it for its whole life.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"examdesk-{name}-", suffix=".log"
        )
        self.name = name
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def stopped(self) -> bool:
        return self.log.closed  # by stop(), and only there

    def stop(self, timeout: float = 30) -> int:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def child_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TWILIO_"))}
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(values)
    return env


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
    }


@dataclass
class Target:
    name: str
    measured: float
    limit: float
    unit: str = "×"
    at_most: bool = True

    @property
    def ok(self) -> bool:
        if self.measured != self.measured:  # NaN: not measured is not met
            return False
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    def row(self) -> list[str]:
        sign = "≤" if self.at_most else "≥"
        return [
            self.name,
            f"{self.measured:.2f}{self.unit}",
            f"{sign} {self.limit:g}{self.unit}",
            "PASS" if self.ok else "FAIL",
        ]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def finish(result: dict[str, Any], targets: list[Target], *, check: bool) -> int:
    print()
    print(table(["target", "measured", "limit", "result"], [t.row() for t in targets]))
    missed = [t.name for t in targets if not t.ok]
    print(f"{len(targets) - len(missed)}/{len(targets)} targets met")
    print(json.dumps(result), flush=True)
    return 1 if check and missed else 0


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(every)
