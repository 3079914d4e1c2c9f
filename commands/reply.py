"""What a command answers: text for a person, plus structured data for richer views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# How many items of a list a reply names before "… and N more".
LISTED = 20


def listed(items: Sequence[str], *, most: int = LISTED) -> str:
    """The first ``most`` of ``items``, separated by commas, then "… and N more"."""
    more = len(items) - most
    return ", ".join(items[:most]) + (f" … and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Confirm:
    """The command would change a lot or can't be undone: ask first, change nothing yet.

    ``command`` is the exact command line to run again, confirmed, to apply it. ``token`` is
    set once the preview is stored as a pending confirmation (confirmations.run_offering).
    """

    prompt: str
    command: str
    button: str = "Apply"
    token: str | None = None


@dataclass
class Reply:
    text: str
    ok: bool = True
    # message | usage | candidate | overview | receipt | confirm | refusal | history | report
    kind: str = "message"
    data: dict[str, Any] = field(default_factory=dict)
    confirm: Confirm | None = None
    # One line per change for the support channel's change log (who, what, whom, why).
    log: list[str] = field(default_factory=list)
    # The Slack users that ``text`` and ``log`` name on purpose (``<@U…>``). Anything else
    # there that looks like a mention, a link or a broadcast came from what someone typed:
    # Slack shows it as text.
    mentions: tuple[str, ...] = ()

    @property
    def needs_confirmation(self) -> bool:
        return self.confirm is not None
