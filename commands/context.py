"""What every command is given: a database session, who acts, when, and in which zone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from notifications.channels import Outside


@dataclass(frozen=True)
class Ctx:
    db_session: Session
    actor: str
    now: datetime
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Oslo"))
    # Where the student registry's exports land (R11); None when not configured.
    registry_dir: Path | None = None
    # Page links, SUPPORT_CONTACT and the log-only channels, for messages and previews;
    # where the change log and the events of this command's changes go.
    outside: Outside = field(default_factory=Outside)
