"""What every command is given: a database session, who acts, when, and in which zone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Ctx:
    db_session: Session
    actor: str
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Oslo"))
    now: datetime = field(default_factory=utcnow)
    # Where the student registry's exports land (R11); None when not configured.
    registry_dir: Path | None = None
