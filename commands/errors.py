"""Domain errors. Each carries a message for a person: what is wrong and how to do it right.

The front doors (Slack, CLI, tests) turn them into a refusal reply; whatever the command had
changed is rolled back with its transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from commands.language import _


class CommandError(Exception):
    """Base of every refusal; ``message`` is shown as it is, ``usage`` after it.

    ``field`` names the input the refusal concerns (``test``, ``text_nb``, ``minutes`` …), so
    that a form shows it on that field; None: the request as a whole.
    """

    def __init__(
        self,
        message: str,
        usage: str | None = None,
        *,
        mentions: tuple[str, ...] = (),
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        # As ``Reply.mentions``: the Slack users the message names on purpose.
        self.mentions = mentions
        self.field = field

    def __str__(self) -> str:
        # A usage text is marked for the catalogue where it is defined (``N_``).
        return f"{self.message}\n{_(self.usage)}" if self.usage else self.message


class InvalidInput(CommandError):
    """The text of the command is malformed."""


class NotFound(CommandError):
    """A test, candidate or user that does not exist."""


class NotAllowed(CommandError):
    """The acting user lacks the role for this (R15)."""


class Refused(CommandError):
    """Well-formed, but the exam rules forbid it now."""


@contextmanager
def concerning(field: str) -> Iterator[None]:
    """A refusal raised inside concerns ``field``, unless it names a field of its own: the
    shared parsers (durations, times, numbers) do not know which input they read."""
    try:
        yield
    except CommandError as error:
        if error.field is None:
            error.field = field
        raise
