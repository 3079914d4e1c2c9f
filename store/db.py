"""Engine and session factory.

SQLite gets WAL, foreign keys, a generous busy timeout and ``BEGIN IMMEDIATE`` so that two
processes changing the same candidate queue up instead of failing with "database is locked"
half-way through a read-modify-write. A unit of work that only reads says so
(``read_only``) and begins DEFERRED: in WAL mode it reads a snapshot and never waits for a
writer.

Within one process the writers of a SQLite file also take turns on a lock of ours
(``_TakingTurns``) before SQLite's: a writer that finds SQLite's lock taken sleeps in its
busy handler, in steps of up to 100 ms, and goes on sleeping after the lock is free, so
under many writers each one waited for the lock far longer than it was held. On our lock
the next writer is woken the moment the last one commits.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_CACHE_KIB = 32 * 1024  # per connection, filled only as pages are read
SQLITE_POOL_SIZE = 16
CHECKPOINT_SECONDS = 3.0
# Execution option read by the SQLite "begin" event: "IMMEDIATE" (default) or "DEFERRED".
SQLITE_BEGIN = "sqlite_begin"


def make_engine(url: str, *, checkpoint_apart: bool = False, **kwargs: Any) -> Engine:
    """``checkpoint_apart`` (SQLite): no commit copies the WAL back into the database file;
    the owner runs ``checkpoint_every`` instead (`examdesk serve` does). A commit that
    checkpoints waits for the copy and its fsync, which slows the slowest changes."""
    # A database error's message is logged; its bound values hold phone numbers and the
    # candidates' page links, which the log must not show.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        # Last in, first out: one request at a time keeps getting the connection whose page
        # cache is warm. SQLite empties a connection's cache when another one has written.
        kwargs.setdefault("pool_use_lifo", True)
        # Keep a connection for each thread that reads at once (requests that only read
        # don't queue for the write lock, plus the background threads). With SQLAlchemy's
        # default of 5, 8 requests at once opened a connection for one in seven, and a new
        # one costs more than the request: PRAGMAs, then an empty page cache.
        kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "factory": _TakingTurns},
            **kwargs,
        )
        _tune_sqlite(engine, checkpoint_apart=checkpoint_apart)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def has_row_locks(connection: Connection) -> bool:
    """False on SQLite, whose BEGIN IMMEDIATE holds off every other writer for the whole
    transaction, so that locking a row first would only cost a statement."""
    return connection.dialect.name != "sqlite"


def raw_execute(engine: Engine, sql: str) -> list[Any]:
    """One statement on a pooled DB-API connection, outside SQLAlchemy's transactions (on
    SQLite those begin IMMEDIATE, and what runs here must never queue for the write lock)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        rows = cursor.fetchall()
        cursor.close()
        return rows
    finally:
        connection.close()


def checkpoint(engine: Engine) -> None:
    """Copy SQLite's WAL back into the database file, as far as no reader still needs it
    (PASSIVE: waits for no reader and no writer)."""
    raw_execute(engine, "PRAGMA wal_checkpoint(PASSIVE)")


def checkpoint_every(engine: Engine, seconds: float = CHECKPOINT_SECONDS) -> Callable[[], None]:
    """Checkpoint ``engine``'s WAL every ``seconds`` in a thread of its own (SQLite releases
    the GIL meanwhile); returns what stops it, after a last checkpoint."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(seconds):
            _checkpoint_logged(engine)
        _checkpoint_logged(engine)

    thread = threading.Thread(target=run, name="wal-checkpoint", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join()

    return halt


def _checkpoint_logged(engine: Engine) -> None:
    try:
        checkpoint(engine)
    except Exception as error:  # the next round tries again; the WAL only grows meanwhile
        log.warning("WAL checkpoint failed: %s", error)


class _TakingTurns(sqlite3.Connection):
    """A SQLite connection whose write transactions take this process's turn for its file
    (``turn``) before SQLite's write lock, and hand it on when they end."""

    turn: threading.Lock
    _has_turn = False

    def begin(self, mode: str) -> None:
        if mode == "IMMEDIATE":
            if not self.turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise sqlite3.OperationalError("database is locked")
            self._has_turn = True
        try:
            self.execute(f"BEGIN {mode}")
        except BaseException:
            self._hand_on()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._hand_on()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._hand_on()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        if self._has_turn:
            self._has_turn = False
            self.turn.release()


_turns: dict[str, threading.Lock] = {}
_turns_lock = threading.Lock()


def _turn_for(engine: Engine) -> threading.Lock:
    """The one turn of this process for the engine's file (every engine on it shares it)."""
    database = engine.url.database
    if database in (None, "", ":memory:"):
        return threading.Lock()  # a database of this engine's alone
    with _turns_lock:
        return _turns.setdefault(os.path.realpath(database), threading.Lock())


def _tune_sqlite(engine: Engine, *, checkpoint_apart: bool) -> None:
    turn = _turn_for(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        dbapi_connection.turn = turn
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The default 2 MiB page cache holds a fraction of a busy exam's candidates: /exam and
        # `… all` on 2,000 candidates ran 25–35 % slower re-reading pages from the OS.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        if checkpoint_apart:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY
        # when another writer got in between; IMMEDIATE takes the write lock up front
        # and waits for it (busy_timeout), which is what serialises concurrent commands.
        # Only units of work that never write may ask for DEFERRED (see ``read_only``).
        begin = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        try:
            connection.connection.dbapi_connection.begin(begin)
        except sqlite3.Error as error:
            # As SQLAlchemy raises a failed statement, so that callers catch one kind of error.
            raise DBAPIError.instance(f"BEGIN {begin}", None, error, sqlite3.Error) from error


def read_only(session: Session) -> Session:
    """Mark ``session``'s next transaction as one that only reads (call before any query).

    SQLite begins it DEFERRED, so it neither waits for nor blocks writers; other databases
    ignore the option. A write in such a transaction is still safe: SQLite refuses it with
    SQLITE_BUSY rather than losing an update.
    """
    session.connection(execution_options={SQLITE_BEGIN: "DEFERRED"})
    return session


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
