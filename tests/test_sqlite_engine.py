"""How `examdesk serve` uses SQLite: pooled connections and WAL checkpoints apart from requests."""

from __future__ import annotations

import threading
import time

from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from store.db import (
    checkpoint_every,
    make_engine,
    make_session_factory,
    read_only,
    session_scope,
)


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


def _busy_timeout_zero(engine) -> None:
    """SQLite's own wait for its write lock off: a writer that meets it fails at once."""
    event.listen(
        engine,
        "connect",
        lambda dbapi_connection, _: dbapi_connection.execute("PRAGMA busy_timeout=0"),
    )


def _hold_a_write(engine, holding: threading.Event, done: threading.Event, end: str) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES ('first')")
        holding.set()
        done.wait(10)
        getattr(connection, end)()


def test_writers_of_one_process_take_turns_before_sqlites_lock(tmp_path):
    """Two engines on one file in one process: the second writer waits for the first to
    commit (or roll back) on the process's turn, never in SQLite's busy handler, which
    sleeps on after the lock is free. With SQLite's own wait off, it still gets through."""
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    first, second = make_engine(url), make_engine(url)
    _write_rows(first, 1)
    _busy_timeout_zero(second)
    try:
        for end in ("commit", "rollback"):
            holding, done = threading.Event(), threading.Event()
            holder = threading.Thread(target=_hold_a_write, args=(first, holding, done, end))
            holder.start()
            assert holding.wait(10)
            threading.Timer(0.05, done.set).start()
            with second.begin() as connection:  # would be "database is locked" at once
                connection.exec_driver_sql("INSERT INTO t VALUES ('second')")
            holder.join()
        with first.connect() as connection:
            rows = connection.exec_driver_sql("SELECT x FROM t WHERE length(x) < 100")
            rows = rows.scalars().all()
        assert sorted(rows) == ["first", "second", "second"]
    finally:
        first.dispose()
        second.dispose()


def test_a_reader_takes_no_turn_and_a_writer_gives_up_after_the_busy_timeout(tmp_path, monkeypatch):
    """A read-only unit of work goes past a writer; a writer that waits for its turn longer
    than the busy timeout fails as SQLite would ("database is locked"), and the turn is free
    again once the holder's transaction ends."""
    engine = make_engine(f"sqlite:///{tmp_path / 'reader.db'}")
    _write_rows(engine, 1)
    monkeypatch.setattr("store.db.SQLITE_BUSY_TIMEOUT_MS", 50)
    factory = make_session_factory(engine)
    try:
        with engine.connect() as holder:
            holder.exec_driver_sql("INSERT INTO t VALUES ('held')")
            with session_scope(factory) as db_session:
                read_only(db_session)
                assert db_session.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
            waiter_error: list[BaseException] = []

            def write() -> None:
                try:
                    with engine.begin() as connection:
                        connection.exec_driver_sql("INSERT INTO t VALUES ('late')")
                except OperationalError as error:
                    waiter_error.append(error)

            waiter = threading.Thread(target=write)
            waiter.start()
            waiter.join(10)
            assert waiter_error and "database is locked" in str(waiter_error[0])
            holder.commit()
        write()  # the turn was handed on with the commit
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 3
    finally:
        engine.dispose()
