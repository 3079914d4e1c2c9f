"""Read-only units of work and the writers' queue on SQLite (store.db, commands.router)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from commands.router import reads_only
from store.db import make_engine, make_session_factory, read_only
from store.migrate import upgrade
from store.models import Staff


@pytest.mark.parametrize(
    ("line", "confirmed", "expected"),
    [
        ("/candidate TDT4100-2026H 10023", False, True),
        ("/exam TDT4100-2026H", False, True),
        ("/exam TDT4100-2026H refresh", False, False),
        ("/incident-time TDT4100-2026H all add 5 outage", False, True),
        ("/incident-time TDT4100-2026H all add 5 outage", True, False),
        ("/incident-time TDT4100-2026H 10023 add 5 outage", False, False),
        ("/reopen TDT4100-2026H 10023 until-close test reason", False, False),
        ("/reopen help", False, True),
        ("/no-such-command", False, True),
        ("", False, True),
    ],
)
def test_only_commands_that_cannot_change_anything_read_only(line, confirmed, expected):
    assert reads_only(line, confirmed=confirmed) is expected


def test_a_preview_stored_for_its_button_writes_r4():
    line = "/incident-time TDT4100-2026H all add 5 outage"
    assert reads_only(line, stores_preview=True) is False
    assert reads_only("/exam TDT4100-2026H", stores_preview=True) is True


@pytest.fixture
def sqlite_factory(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ro.db'}")
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_read_does_not_wait_for_a_writer(sqlite_factory):
    """While a writer holds SQLite's write lock, a read-only session reads at once."""
    with sqlite_factory() as writer:
        writer.execute(text("DELETE FROM staff"))  # BEGIN IMMEDIATE: the write lock is held
        with sqlite_factory() as reader:
            read_only(reader)
            started = time.monotonic()
            assert reader.scalars(select(Staff)).all() == []
            assert time.monotonic() - started < 5  # a writer's wait is the 60 s busy timeout
        writer.rollback()


def test_a_write_in_a_read_only_session_is_refused_not_lost(sqlite_factory):
    """A read-only session that writes after another writer committed fails; nothing is lost."""
    with sqlite_factory() as reader:
        read_only(reader)
        assert reader.execute(text("SELECT count(*) FROM staff")).scalar_one() == 0
        with sqlite_factory() as writer:
            writer.execute(
                text(
                    "INSERT INTO staff (user_id, role, added_at, added_by) "
                    "VALUES ('U1', 'support', '2026-01-01 00:00:00', 'test')"
                )
            )
            writer.commit()
        with pytest.raises(Exception, match=r"locked|busy"):
            reader.execute(text("DELETE FROM staff"))
        reader.rollback()
    with sqlite_factory() as check:
        assert check.execute(text("SELECT count(*) FROM staff")).scalar_one() == 1


def test_writer_threads_queue_and_each_sees_the_one_before(sqlite_factory):
    """Eight threads read-modify-write one row: none is lost, none fails with "database is
    locked" (BEGIN IMMEDIATE and the busy timeout queue them; no lock of our own)."""
    with sqlite_factory.begin() as s:
        s.execute(
            text(
                "INSERT INTO staff (user_id, role, added_at, added_by) "
                "VALUES ('U1', 'support', '2026-01-01 00:00:00', '0')"
            )
        )
    errors: list[BaseException] = []

    def add_one() -> None:
        try:
            for _ in range(10):
                with sqlite_factory.begin() as s:
                    n = int(s.execute(text("SELECT added_by FROM staff")).scalar_one())
                    s.execute(text("UPDATE staff SET added_by = :n"), {"n": str(n + 1)})
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=add_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:1]
    with sqlite_factory() as s:
        assert s.execute(text("SELECT added_by FROM staff")).scalar_one() == "80"
