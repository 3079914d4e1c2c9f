"""One entry for every front door: a slash command's text in, a Reply out."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from commands import (
    candidate_view,
    exam_overview,
    incident_time,
    notice,
    question_error,
    reopen,
    undo,
)
from commands.context import Ctx
from commands.errors import InvalidInput
from commands.language import _
from commands.reply import Reply
from commands.text import CONTROL, clip

Handler = Callable[..., Reply]

COMMANDS: dict[str, tuple[Handler, str]] = {
    "/incident-time": (incident_time.run, incident_time.USAGE),
    "/reopen": (reopen.run, reopen.USAGE),
    "/candidate": (candidate_view.run, candidate_view.USAGE),
    "/exam": (exam_overview.run, exam_overview.USAGE),
    "/notice": (notice.run, notice.USAGE),
    "/question-error": (question_error.run, question_error.USAGE),
    # Not a slash command of its own: the Undo button of a receipt runs it, and so can
    # `examdesk run`.
    "/undo": (undo.run, undo.USAGE),
}


# Commands whose text is a message for people: their commas stay as written.
FREE_TEXT = ("notice", "question-error")
HELP = ("help", "-h", "--help")

# Whether a command, given its arguments and whether it is confirmed, only reads. Such a
# command runs in a read-only transaction (store.db.read_only): it neither waits for nor
# blocks writers. Commands not listed here are treated as writing.
ReadsOnly = Callable[[list[str], bool], bool]
READS_ONLY: dict[str, ReadsOnly] = {
    "/candidate": lambda args, confirmed: True,
    "/exam": exam_overview.reads_only,
    "/incident-time": incident_time.reads_only,
    "/undo": undo.reads_only,
}


def split(command_line: str) -> tuple[str, list[str]]:
    """``"/reopen T 1 in 30m"`` → ``("/reopen", ["T", "1", "in", "30m"])``.

    Plain whitespace splitting: reasons are free text and may hold quotes and apostrophes.
    A candidate list may have spaces after its commas ("10023, 10024"); only such number
    lists are joined again, so a reason's "network down, room 3" keeps its space. The text
    of a FREE_TEXT command is one word, as written: the candidates' page shows its line
    breaks.
    """
    if CONTROL.search(command_line):
        # NUL and friends are never typed on purpose, and PostgreSQL refuses to store NUL.
        raise InvalidInput(_("The command holds control characters; type it again as plain text."))
    words = command_line.split()
    if not words:
        raise InvalidInput(_("Empty command.") + " " + known_commands())
    name = command_name(command_line)
    if name.lstrip("/") in FREE_TEXT:
        return name, [word.rstrip() for word in command_line.split(maxsplit=2)[1:]]
    return name, _join_number_lists(words)[1:]


def command_name(command_line: str) -> str:
    """The command a line names, as ``split`` reads it ("/incident-time"); "examdesk" when
    the line is empty."""
    words = command_line.split(maxsplit=1)
    if not words:
        return "examdesk"
    # Command names are ASCII: a full-width slash or letters from an East Asian keyboard
    # ("／ｎｏｔｉｃｅ") name the same command.
    name = unicodedata.normalize("NFKC", words[0]).lower()
    return name if name.startswith("/") else "/" + name


def _join_number_lists(words: list[str]) -> list[str]:
    joined: list[str] = []
    for word in words:
        previous = joined[-1] if joined else ""
        if previous.endswith(",") and previous.replace(",", "").isdigit() and word[:1].isdigit():
            joined[-1] = previous + word
        else:
            joined.append(word)
    return joined


def known_commands() -> str:
    return _("Commands: {commands} (add `help` to any for its usage).").format(
        commands=", ".join(sorted(COMMANDS))
    )


def reads_only(command_line: str, *, confirmed: bool = False, stores_preview: bool = False) -> bool:
    """True when running ``command_line`` cannot change anything (bad input included).

    ``stores_preview``: a preview is stored as a pending confirmation in the same
    transaction (confirmations.run_offering), so the transaction writes, as the confirmed
    command's does.
    """
    try:
        name, args = split(command_line)
    except InvalidInput:
        return True
    if name not in COMMANDS or (len(args) == 1 and args[0].lower() in HELP):
        return True
    check = READS_ONLY.get(name)
    return check is not None and check(args, confirmed or stores_preview)


def dispatch(ctx: Ctx, command_line: str, *, confirmed: bool = False) -> Reply:
    name, args = split(command_line)
    if name not in COMMANDS:
        # As typed, so that what looks like a known name shows what differs.
        typed = command_line.split(maxsplit=1)[0]
        raise InvalidInput(
            _("There is no command {command}.").format(command=clip(typed)) + " " + known_commands()
        )
    handler, usage = COMMANDS[name]
    if len(args) == 1 and args[0].lower() in HELP:
        return Reply(text=_(usage), kind="usage")
    return handler(ctx, args, confirmed=confirmed)
