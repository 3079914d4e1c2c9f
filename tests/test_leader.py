"""One scheduler among many processes: the lease (SQLite, any database), the advisory lock
(PostgreSQL), and takeover when the leader is killed with SIGKILL."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import move_clock
from sqlalchemy import Engine, select, text

from bot.runtime import leader
from bot.runtime.leader import AdvisoryLock, Leadership, LeaseElection
from store import clock
from store.models import Lease

ROOT = Path(__file__).resolve().parents[1]


def wait_for(check: Callable[[], object], timeout: float) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def unique(prefix: str) -> str:
    # Advisory locks are shared by the whole database server's database: keep xdist apart.
    return f"{prefix}-{secrets.token_hex(4)}"


def lease_holder(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(Lease.holder).where(Lease.name == name))


def test_lease_is_held_by_one_renewed_and_taken_over_after_expiry(engine, session_factory):
    # The lease is timed by the program's clock: the test moves the clock past the expiry
    # rather than sleep past a short lease, which one slow step on a loaded machine could
    # outlast before b is meant to get it.
    name = unique("lease")
    a = LeaseElection(engine, name=name, holder="a", seconds=30)
    b = LeaseElection(engine, name=name, holder="b", seconds=30)
    assert a.acquire()
    assert not b.acquire()
    assert a.acquire()  # renewal
    assert lease_holder(engine, name) == "a"
    move_clock(clock.now() + timedelta(seconds=31))  # a stopped renewing: dead or hung
    assert b.acquire()
    assert not a.acquire()  # a notices on its next heartbeat that it no longer leads
    assert lease_holder(engine, name) == "b"
    b.release()
    assert lease_holder(engine, name) is None
    assert a.acquire()


def test_leadership_calls_back_and_passes_on_when_the_leader_stops(engine, session_factory):
    name = unique("lease")
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def member(holder: str) -> Leadership:
        def note(what: str) -> Callable[[], None]:
            def callback() -> None:
                with lock:
                    events.append((what, holder))

            return callback

        # Longer than any stall of a loaded machine: the first must not lose the lease
        # while the second waits; stop() hands it on without waiting for it to expire.
        election = LeaseElection(engine, name=name, holder=holder, seconds=30)
        return Leadership(
            election, on_elected=note("elected"), on_deposed=note("deposed"), interval=0.1
        )

    first = member("first").start()
    wait_for(lambda: first.leading, 5)
    second = member("second").start()
    time.sleep(0.5)
    assert not second.leading
    first.stop()  # steps down and releases: no need to wait for the lease to expire
    wait_for(lambda: second.leading, 5)
    second.stop()
    assert events == [
        ("elected", "first"),
        ("deposed", "first"),
        ("elected", "second"),
        ("deposed", "second"),
    ]


def test_a_leader_that_cannot_start_its_work_lets_another_lead(engine, session_factory):
    name = unique("lease")

    def broken() -> None:
        raise RuntimeError("scheduler would not start")

    failing = Leadership(
        LeaseElection(engine, name=name, holder="failing", seconds=30),
        on_elected=broken,
        on_deposed=lambda: None,
        interval=0.1,
    ).start()
    healthy = Leadership(
        LeaseElection(engine, name=name, holder="healthy", seconds=30),
        on_elected=lambda: None,
        on_deposed=lambda: None,
        interval=0.1,
    ).start()
    try:
        wait_for(lambda: healthy.leading, 5)
        assert not failing.leading
    finally:
        failing.stop()
        healthy.stop()


# ---------------------------------------------------------------- real processes

CHILD = textwrap.dedent(
    """
    import sys, time
    from bot.runtime.leader import AdvisoryLock, Leadership, LeaseElection
    from store.db import make_engine

    url, kind, name, holder, seconds, interval = sys.argv[1:7]
    if kind == "lease":
        election = LeaseElection(
            make_engine(url), name=name, holder=holder, seconds=float(seconds)
        )
    else:
        election = AdvisoryLock(url, name=name, holder=holder)
    Leadership(
        election,
        on_elected=lambda: print("elected", flush=True),
        on_deposed=lambda: print("deposed", flush=True),
        interval=float(interval),
    ).start()
    time.sleep(600)
    """
)


@pytest.fixture
def spawn(database_url: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    children: list[subprocess.Popen] = []

    def run(kind: str, name: str, holder: str, *, seconds: float, interval: float):
        timing = (seconds, interval)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url, kind, name, holder, *map(str, timing)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        children.append(child)
        return child

    yield run
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


TAKEOVER_LIMIT = 60.0  # seconds: "another takes over within a minute when it dies"


def kill_and_time_takeover(
    spawn, kind: str, who_leads: Callable[[], str | None], name: str, **timing: float
) -> tuple[float, str]:
    first = spawn(kind, name, "first", **timing)
    wait_for(lambda: who_leads() == "first", 30)
    second = spawn(kind, name, "second", **timing)
    time.sleep(2 * timing["interval"] + 1)  # the follower has tried, and failed, by now
    assert who_leads() == "first"
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    killed = time.monotonic()
    wait_for(lambda: who_leads() == "second", TAKEOVER_LIMIT + 5)
    took = time.monotonic() - killed
    second.send_signal(signal.SIGTERM)
    output, _ = second.communicate(timeout=30)
    return took, output


def test_sqlite_lease_passes_to_a_second_process_when_the_leader_is_killed(
    spawn, engine, session_factory
):
    """kill -9 on the leader: the follower takes the expired lease (TTL + one heartbeat)."""
    name = unique("sched")
    seconds, interval = 3.0, 0.5
    took, output = kill_and_time_takeover(
        spawn,
        "lease",
        lambda: _live_lease_holder(engine, name),
        name,
        seconds=seconds,
        interval=interval,
    )
    # The requirement is "within a minute"; the lease's TTL makes it seconds when the machine
    # is not starved (measured takeover times are in docs/operations.md, not asserted here).
    assert took < TAKEOVER_LIMIT, took
    assert output.count("elected") == 1, output


def _live_lease_holder(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(Lease.holder, Lease.expires_at).where(Lease.name == name)
        ).one_or_none()
    return row.holder if row is not None and row.expires_at > clock.now() else None


# ---------------------------------------------------------------- PostgreSQL

postgres_only = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="advisory locks are PostgreSQL's; set TEST_DATABASE_URL to a PostgreSQL database",
)


def advisory_holder(engine: Engine, name: str) -> str | None:
    """Who holds the lock, as the database sees it: `pg_locks` and the session's name."""
    key = leader.advisory_key(name)
    with engine.connect() as conn:
        return conn.scalar(
            text(
                "SELECT split_part(a.application_name, ':', 1) FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid = :hi AND l.objid = :lo "
                "AND l.database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            ),
            {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
        )


@postgres_only
def test_postgres_advisory_lock_is_held_by_one_and_freed_when_its_session_ends(engine):
    name = unique("sched")
    url = engine.url.render_as_string(hide_password=False)
    a = AdvisoryLock(url, name=name, holder="a:1")
    b = AdvisoryLock(url, name=name, holder="b:2")
    try:
        assert a.acquire()
        assert not b.acquire()
        assert a.acquire()  # still held: the round trip on its session works
        assert advisory_holder(engine, name) == "a"
        # The database ends a's session (restart, network cut): a learns it no longer leads.
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'a:1'"
                )
            )
        assert not a.acquire()
        assert b.acquire()
        assert advisory_holder(engine, name) == "b"
        b.release()
        assert advisory_holder(engine, name) is None
    finally:
        a.release()
        b.release()


@postgres_only
def test_postgres_scheduler_lock_passes_to_a_second_process_on_sigkill(spawn, engine):
    """kill -9 on the leader: PostgreSQL frees its advisory lock at once and the follower
    takes it at its next try, within RETRY_SECONDS (the real default)."""
    name = unique("sched")
    took, output = kill_and_time_takeover(
        spawn,
        "advisory",
        lambda: advisory_holder(engine, name),
        name,
        seconds=0,
        interval=leader.RETRY_SECONDS,
    )
    assert took < TAKEOVER_LIMIT, took
    assert output.count("elected") == 1, output
