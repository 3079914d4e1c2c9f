"""Schema migrations with Alembic, callable from code (no alembic.ini needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions. Kept here so that checking a database costs one
# query instead of loading every migration script; a test keeps it equal to Alembic's head.
HEAD = "0010"


def alembic_config(engine: Engine) -> Config:
    # Alembic is imported only where it is used: every `examdesk run` checks the revision,
    # and loading Alembic would add a tenth of a second to each of them.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database (one linear history: one row), or None."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.scalar(text("SELECT version_num FROM alembic_version"))


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == HEAD


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config(engine)
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                config.attributes["connection"] = conn
                step(config, revision)
            return
        # A batch migration rebuilds a SQLite table (copy, drop, rename). With foreign keys
        # on, dropping the old table would delete every row that refers to it (receipts,
        # deliveries, reopenings …). The pragma only takes effect outside a transaction.
        driver = conn.connection.dbapi_connection
        driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                step(config, revision)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                if broken is not None:
                    raise RuntimeError(f"migration left a dangling reference: {tuple(broken)}")
        finally:
            driver.execute("PRAGMA foreign_keys=ON")
