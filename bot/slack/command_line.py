"""A command line as a person typed it in Slack, run through the core.

A slash command and a form's submission both come here, so that a form runs exactly the
command its fields spell, with the same reply and the same confirmation.
"""

from __future__ import annotations

from bot.deps import Deps
from commands import confirmations
from commands.reply import Reply
from store import clock


def run_line(deps: Deps, actor: str, command_line: str) -> Reply:
    settings = deps.settings
    return confirmations.run_offering(
        session_factory=deps.session_factory,
        actor=actor,
        command_line=command_line,
        tz=settings.tz,
        now=clock.now(),
        registry_dir=settings.registry_dir,
        outside=settings.outside,
        via=command_line.split()[0],
    )
