"""A comparable picture of the whole database, to prove that a refused command changed nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from store.models import Base

# A running notifier renews its liveness row whatever a command does.
MACHINERY = frozenset({"leases"})


def snapshot(source: Engine | sessionmaker) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the notifiers' liveness rows, in primary-key order (from
    an engine or a session factory)."""
    engine = source.kw["bind"] if isinstance(source, sessionmaker) else source
    picture = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in MACHINERY:
                continue
            order = list(table.primary_key.columns)
            rows = conn.execute(select(table).order_by(*order)).all()
            picture[table.name] = [tuple(row) for row in rows]
    return picture
