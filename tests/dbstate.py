"""A comparable picture of the whole database, to prove that a refused command changed nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from store.models import Base


def snapshot(source: Engine | sessionmaker) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order (from an engine or a session factory)."""
    engine = source.kw["bind"] if isinstance(source, sessionmaker) else source
    picture = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns)
            rows = conn.execute(select(table).order_by(*order)).all()
            picture[table.name] = [tuple(row) for row in rows]
    return picture
