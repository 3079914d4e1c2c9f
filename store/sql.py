"""SQL that SQLite and PostgreSQL spell differently, as SQLAlchemy constructs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction


class json_object_agg(GenericFunction[Any]):  # named like the SQL function
    """One JSON object of a group's key/value pairs: ``json_object_agg(key, value)``.

    Lets a bulk change build its per-row record in the database instead of fetching every
    row into Python. PostgreSQL's name; SQLite calls it ``json_group_object``.
    """

    type = JSON()
    inherit_cache = True


@compiles(json_object_agg, "sqlite")
def _json_group_object(element: json_object_agg, compiler: Any, **kw: Any) -> str:
    return f"json_group_object({compiler.process(element.clauses, **kw)})"
