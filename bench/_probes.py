"""Lower bounds for `bench/bound.py`: the least any command could do, as Bolt commands.

Each probe does by hand, with the `sqlite3` module and no SQLAlchemy, less than the command
it stands for (no permission check, no deadline arithmetic, no change log to Slack) and
answers with the reply `/candidate` really gave (read from BENCH_PROBE_REPLY on first use).
Served by the same process as the floor and the commands, they show how close to the floor
any command that reads or writes the database and answers can get on this machine.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from sqlalchemy import Engine

READ = "/bench-read"
WRITE = "/bench-write"
_CANDIDATE = (
    "SELECT c.id, c.test_id, c.status, c.incident_minutes, c.extra_minutes "
    "FROM candidates c JOIN tests t ON t.id = c.test_id WHERE t.code = ? AND c.number = ?"
)
_ADD_MINUTE = "UPDATE candidates SET incident_minutes = incident_minutes + 1 WHERE id = ?"
_RECORD = (
    "INSERT INTO changes (at, actor, action, test_id, candidate_id, reason, before, after) "
    "VALUES (?, ?, 'incident_time', ?, ?, ?, ?, ?)"
)


def register(app: App, engine: Engine) -> None:
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path:
        raise SystemExit("the probes are raw sqlite3: run bench.bound on its SQLite default")
    local = threading.local()
    # Writers of one process queue here, as store.db makes them queue (no busy-handler sleeps).
    write_lock = threading.Lock()

    def connection() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    @functools.cache
    def answer() -> dict[str, Any]:
        with open(os.environ["BENCH_PROBE_REPLY"], encoding="utf-8") as file:
            return json.load(file)

    @app.command(READ)
    def read(ack: Any, command: dict[str, Any]) -> None:
        code, number = command["text"].split()[:2]
        row = connection().execute(_CANDIDATE, (code, number)).fetchone()
        assert row is not None, command["text"]
        ack(**answer())

    @app.command(WRITE)
    def write(ack: Any, command: dict[str, Any], user_id: str) -> None:
        code, number = command["text"].split()[:2]
        conn = connection()
        with write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cid, test_id, _, before, _ = conn.execute(_CANDIDATE, (code, number)).fetchone()
                conn.execute(_ADD_MINUTE, (cid,))
                conn.execute(
                    _RECORD,
                    (
                        # SQLAlchemy's SQLite format for DateTime, as store.types writes it.
                        datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
                        user_id,
                        test_id,
                        cid,
                        "bench",
                        json.dumps({"incident_minutes": before}),
                        json.dumps({"incident_minutes": before + 1}),
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        ack(**answer())
