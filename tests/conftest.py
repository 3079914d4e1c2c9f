"""Shared fixtures.

The suite runs against ``TEST_DATABASE_URL`` (SQLite in a temporary folder when unset). On
PostgreSQL each xdist worker gets a database of its own, created on first use. The schema is
migrated once per worker; every test starts from empty tables.

Time: the program has one clock (``store.clock``). A test's ``world`` sets it: while the
world is at 2026-12-01 10:00, so is every "now" in this process and in every process the
test starts (``EXAMDESK_CLOCK_SHIFT`` is set to match), and the clock goes on ticking from
there. Tests without a world run at the real time moved by ``EXAMDESK_CLOCK_SHIFT``, so
running the suite with ``EXAMDESK_CLOCK_SHIFT=400d`` proves that no test is bound to the
day it runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, delete, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from commands.context import Ctx
from commands.reply import Reply
from commands.runner import execute
from store import clock, migrate
from store.db import make_engine, make_session_factory
from store.models import Base, Candidate, Staff, StaffTest, Test

OSLO = ZoneInfo("Europe/Oslo")
SUPPORT = "U0SUPPORT1"
TEACHER = "U0TEACHER1"
OTHER_TEACHER = "U0TEACHER2"
STRANGER = "U0STRANGER"
# The keys DESIGN.md promises in `examdesk status TEST CANDIDATE --json`.
STATUS_KEYS = frozenset(
    {
        "test",
        "candidate",
        "status",
        "ordinary_end",
        "individual_end",
        "extra_minutes",
        "incident_minutes",
        "end_time",
        "new_delivery",
        "deadline",
    }
)


def oslo(text_: str) -> datetime:
    """An aware UTC datetime from ``YYYY-MM-DD HH:MM`` in Europe/Oslo."""
    return datetime.strptime(text_, "%Y-%m-%d %H:%M").replace(tzinfo=OSLO).astimezone(UTC)


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _postgres_url(base: str) -> str:
    url = make_url(base)
    name = f"{url.database}_{_worker_id()}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = os.environ.get("TEST_DATABASE_URL")
    if base and base.startswith("postgresql"):
        return _postgres_url(base)
    folder = tmp_path_factory.mktemp("db")
    return f"sqlite:///{folder / 'examdesk.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@pytest.fixture
def session_factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield make_session_factory(engine)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


def move_clock(to: datetime) -> None:
    """Set this process's clock, and that of every process it starts from now on, to ``to``;
    it goes on ticking from there."""
    shift = to - (clock.now() - clock.shift())
    clock.set_shift(shift)
    os.environ[clock.ENV] = clock.format_shift(shift)


@pytest.fixture(autouse=True)
def _restore_clock() -> Iterator[None]:
    shift, env = clock.shift(), os.environ.get(clock.ENV)
    yield
    clock.set_shift(shift)
    if env is None:
        os.environ.pop(clock.ENV, None)
    else:
        os.environ[clock.ENV] = env


class World:
    """Builds tests, candidates and staff, and runs commands as a user at a chosen time.

    Setting ``now`` moves the program's clock there too (``move_clock``)."""

    def __init__(self, factory: sessionmaker[Session], now: datetime) -> None:
        self.factory = factory
        self.now = now

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        self._now = value
        move_clock(value)

    def __repr__(self) -> str:
        return f"World(now={self._now.isoformat()})"

    def add_test(
        self,
        code: str = "TDT4100-2026H",
        *,
        kind: str = "school",
        start: str = "2026-12-01 09:00",
        end: str = "2026-12-01 13:00",
        upload: bool = True,
        auto_deliver: bool = True,
        teachers: tuple[str, ...] = (TEACHER,),
        title: str = "Object-oriented programming",
    ) -> str:
        with self.factory.begin() as s:
            test = Test(
                code=code,
                title=title,
                kind=kind,
                start=oslo(start),
                end=oslo(end),
                has_upload=upload,
                auto_deliver=auto_deliver,
                updated_at=self.now,
            )
            s.add(test)
            s.flush()
            for user in teachers:
                if s.get(Staff, user) is None:
                    s.add(Staff(user_id=user, role="teacher", added_at=self.now, added_by="test"))
                    s.flush()
                s.add(StaffTest(user_id=user, test_id=test.id))
        return code

    def add_candidates(self, code: str, numbers: list[str] | range, **fields: Any) -> None:
        import secrets

        with self.factory.begin() as s:
            test = s.query(Test).filter_by(code=code).one()
            for number in numbers:
                values = {
                    "status": "started",
                    "language": "nb",
                    "extra_minutes": 0,
                    "incident_minutes": 0,
                    "phone": "+4741234567",
                } | fields
                s.add(
                    Candidate(
                        test_id=test.id,
                        number=str(number),
                        notice_token=secrets.token_urlsafe(32),
                        **values,
                    )
                )

    def add_staff(self, user: str, role: str = "support") -> None:
        with self.factory.begin() as s:
            s.merge(Staff(user_id=user, role=role, added_at=self.now, added_by="test"))

    def at(self, when: str) -> World:
        self.now = oslo(when)
        return self

    def run(self, command_line: str, *, actor: str = SUPPORT, confirmed: bool = False) -> Reply:
        return execute(
            session_factory=self.factory,
            actor=actor,
            command_line=command_line,
            tz=OSLO,
            now=self.now,
            confirmed=confirmed,
        )

    def candidate(self, code: str, number: str) -> Candidate:
        with self.factory() as s:
            c = (
                s.query(Candidate)
                .join(Test)
                .filter(Test.code == code, Candidate.number == number)
                .one()
            )
            c.reopenings  # noqa: B018 - load before the session closes
            c.test  # noqa: B018
            return c

    def ctx(self, session: Session, actor: str = SUPPORT) -> Ctx:
        return Ctx(db_session=session, actor=actor, tz=OSLO, now=self.now)


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> World:
    w = World(factory=session_factory, now=oslo("2026-12-01 10:00"))
    w.add_staff(SUPPORT, "support")
    return w


@pytest.fixture
def cli(database_url: str, tmp_path: Path, session_factory) -> Callable[..., Any]:
    """Run the real `examdesk` console entry point in a subprocess."""
    import subprocess

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
        full_env = os.environ | {"DATABASE_URL": database_url, "EXAMDESK_TIMEZONE": "Europe/Oslo"}
        full_env |= env or {}
        return subprocess.run(
            [sys.executable, "-m", "bot.runtime.cli", *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: the main thread may already run an event loop
    (Playwright's sync API, for the page tests, leaves one there)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


MINUTE = timedelta(minutes=1)
