"""How `examdesk serve` uses SQLite: pooled connections and WAL checkpoints apart from requests."""

from __future__ import annotations

import time

from sqlalchemy import event, text

from store.db import checkpoint_every, make_engine


def test_reads_at_once_reuse_their_connections(tmp_path):
    """Eight readers at once, twice: the second time no SQLite connection is opened anew
    (a new one costs more than a command: PRAGMAs, then an empty page cache)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    try:
        for _ in range(2):
            held = [engine.connect() for _ in range(8)]
            for connection in held:
                connection.close()
        assert len(opened) == 8
    finally:
        engine.dispose()


def _autocheckpoint(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()


def _write_rows(engine, n: int) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x TEXT)")
        connection.execute(text("INSERT INTO t VALUES (:x)"), [{"x": "x" * 1000}] * n)


def test_commits_checkpoint_themselves_unless_checkpointing_is_apart(tmp_path):
    default = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    apart = make_engine(f"sqlite:///{tmp_path / 'b.db'}", checkpoint_apart=True)
    try:
        assert _autocheckpoint(default) == 1000
        assert _autocheckpoint(apart) == 0
        # 6,000 rows of 1,000 bytes: ~1,500 pages, so the WAL passes 1,000 pages and the
        # default engine's commit copies it into the database file itself.
        for engine in (default, apart):
            for _ in range(3):
                _write_rows(engine, 2000)
        assert (tmp_path / "a.db").stat().st_size > 1_000_000
        assert (tmp_path / "b.db").stat().st_size < 100_000
    finally:
        default.dispose()
        apart.dispose()


def test_checkpoint_thread_copies_the_wal_into_the_database_and_stops(tmp_path):
    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}", checkpoint_apart=True)
    stop = checkpoint_every(engine, seconds=0.05)
    try:
        _write_rows(engine, 2000)
        deadline = time.monotonic() + 10
        while path.stat().st_size < 500_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_size >= 500_000
    finally:
        stop()
        engine.dispose()
