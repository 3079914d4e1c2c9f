"""One scheduler among many processes: leader election on the shared database.

Every `examdesk serve` process runs a `Leadership` loop; the one that wins the election runs
the scheduler, the others retry every few seconds and take over when the leader is gone.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated
  connection. The server drops it the moment that connection ends, so a killed leader (even
  kill -9) is replaced at the followers' next try; a leader whose host vanishes is noticed by
  TCP keepalives within about half a minute.
- SQLite (one host): a row in `leases` (name, holder, expires_at) renewed by heartbeat with a
  conditional UPDATE, and taken over by anyone once it has expired.

Both record who leads where an operator can see it: `pg_stat_activity.application_name` of
the lock's connection, or `leases.holder`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, delete, insert, or_, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from store import clock
from store.models import Lease

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"
# Followers try again this often; it bounds the takeover time on PostgreSQL.
RETRY_SECONDS = 5.0
# A lease not renewed for this long is free (SQLite); the leader renews every RETRY_SECONDS.
LEASE_SECONDS = 30.0
# Server-side keepalives on the lock connection, so that PostgreSQL ends the session (and so
# frees the lock) of a leader whose host has vanished after about idle + interval * count.
_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


def holder_id() -> str:
    """Who this process is, readable in logs and in the database (at most 63 characters)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Election(Protocol):
    name: str
    holder: str

    def acquire(self) -> bool:
        """Become or stay the leader; True while this process leads."""

    def release(self) -> None:
        """Step down so that another process can lead at once."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock`, derived from the name."""
    return int.from_bytes(hashlib.sha256(f"examdesk:{name}".encode()).digest()[:8], signed=True)


class AdvisoryLock:
    """PostgreSQL: leader is who holds a session-level advisory lock.

    The lock lives on a connection of its own (not from the pool, whose pre-ping, recycling
    and dispose would end the session and silently drop the lock), in autocommit so it is
    never left idle in a transaction.
    """

    def __init__(self, url: str, *, name: str, holder: str) -> None:
        self.name = name
        self.holder = holder
        self.key = advisory_key(name)
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "application_name": holder[:63],
                "options": _KEEPALIVES,
                "connect_timeout": 10,
            },
        )
        self._conn: Connection | None = None
        self._held = False

    def acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            if self._held:
                # The lock is as alive as its session: a round trip proves both.
                self._conn.exec_driver_sql("SELECT 1")
                return True
            self._held = bool(
                self._conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
            )
            return self._held
        except DBAPIError as error:
            log.warning("leader election: lost the database connection (%s)", _first(error))
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is not None and self._held:
            # When the session is gone, the lock went with it.
            with contextlib.suppress(DBAPIError):
                self._conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.close()
            self._conn = None


class LeaseElection:
    """Any database (used for SQLite): leader is who holds an unexpired row in `leases`."""

    def __init__(
        self, engine: Engine, *, name: str, holder: str, seconds: float = LEASE_SECONDS
    ) -> None:
        self.name = name
        self.holder = holder
        self.engine = engine
        self.seconds = seconds

    def acquire(self) -> bool:
        now = clock.now()
        until = now + timedelta(seconds=self.seconds)
        try:
            with self.engine.begin() as conn:
                # One statement renews our own lease or takes an expired one; a live lease of
                # someone else matches no row.
                taken = conn.execute(
                    update(Lease)
                    .where(
                        Lease.name == self.name,
                        or_(Lease.holder == self.holder, Lease.expires_at < now),
                    )
                    .values(holder=self.holder, expires_at=until)
                ).rowcount
                if taken:
                    return True
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(Lease).values(
                                name=self.name, holder=self.holder, expires_at=until
                            )
                        )
                except IntegrityError:
                    return False  # someone else holds it
                return True
        except DBAPIError as error:
            log.warning("leader election: cannot reach the database (%s)", _first(error))
            return False

    def release(self) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    delete(Lease).where(Lease.name == self.name, Lease.holder == self.holder)
                )
        except DBAPIError as error:
            log.warning("leader election: could not release the lease (%s)", _first(error))


def elect(engine: Engine, *, name: str = SCHEDULER, holder: str | None = None) -> Election:
    """The election that suits the database behind ``engine``."""
    holder = holder or holder_id()
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(
            engine.url.render_as_string(hide_password=False), name=name, holder=holder
        )
    return LeaseElection(engine, name=name, holder=holder)


class Leadership:
    """Runs ``on_elected`` when this process becomes the leader and ``on_deposed`` when it
    stops being one (lost the lock, or shuts down). Callbacks run on the election thread."""

    def __init__(
        self,
        election: Election,
        *,
        on_elected: Callable[[], None],
        on_deposed: Callable[[], None],
        interval: float = RETRY_SECONDS,
    ) -> None:
        self.election = election
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.interval = interval
        self.leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"leader-{election.name}", daemon=True
        )

    def start(self) -> Leadership:
        log.info("%s: %s joins the election", self.election.name, self.election.holder)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._step_down()
        self.election.release()

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            delay = self.interval
            try:
                won = self.election.acquire()
            except Exception:
                log.exception("leader election failed")
                won = False
            if self._stop.is_set():
                return
            if won and not self.leading:
                log.info("%s: %s is the leader", self.election.name, self.election.holder)
                if self._call(self.on_elected):
                    self.leading = True
                else:
                    # Leading without doing the work would starve everyone; let another try.
                    self.election.release()
            elif not won and self.leading:
                log.warning(
                    "%s: %s is no longer the leader", self.election.name, self.election.holder
                )
                self._step_down()

    def _step_down(self) -> None:
        if self.leading:
            self.leading = False
            self._call(self.on_deposed)

    @staticmethod
    def _call(callback: Callable[[], None]) -> bool:
        try:
            callback()
        except Exception:
            log.exception("leader callback %s failed", getattr(callback, "__name__", callback))
            return False
        return True


def _first(error: Exception) -> str:
    return str(error).splitlines()[0][:200]
