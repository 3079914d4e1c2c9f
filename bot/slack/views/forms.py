"""The commands' forms (modals), and the command line a submitted form stands for.

Built with ``slack_sdk.models``, whose ``to_dict()`` checks Slack's limits (title and button
text, labels, options), so a form that Slack would refuse fails here, in the tests. Each
input's ``block_id`` is the name the core gives that input in a refusal
(``CommandError.field``): a refusal shows on its field by that name.

A submitted form becomes the command line a person would type, so it runs through the same
code with the same confirmations. What only the form can get wrong, an empty field or a
value that would split into several words of the command, is refused here
(``FormProblem``); everything else is the core's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ContextBlock,
    ExternalDataSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
)
from slack_sdk.models.views import View

from commands.audit import MAX_REASON
from commands.language import _
from commands.notice import MAX_TEXT
from commands.test_picker import Choice
from commands.timeparse import duration_words

TEST_ACTION = "form_test"
OPEN_ACTION = "form_open"
CALLBACK_PREFIX = "form_"
# Slack's limits for an option's text and a modal's title.
OPTION_TEXT_LIMIT = 75
# A refusal longer than this is cut on its field; the whole text is the core's reply.
ERROR_LIMIT = 300
# The commands with a form here and their inputs, in order; `/question-error` has its own
# (question_errors.py).
FIELDS = {
    "incident-time": ("test", "who", "candidates", "operation", "minutes", "reason"),
    "reopen": ("test", "candidate", "mode", "datetime", "duration", "reason"),
    "candidate": ("test", "candidate"),
    "exam": ("test",),
    "notice": ("test", "text_nb", "text_en"),
}
COMMANDS = tuple(FIELDS)


class FormProblem(Exception):
    """A form that cannot become a command line: ``field`` and what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Opened:
    """Where the result of a submitted form goes: the slash command's or button's
    response_url (ephemeral, where the user was), else a direct message."""

    response_url: str | None = None

    def metadata(self) -> str:
        return json.dumps({"response_url": self.response_url})

    @classmethod
    def of(cls, view: dict[str, Any]) -> Opened:
        try:
            data = json.loads(view.get("private_metadata") or "{}")
        except (ValueError, RecursionError):
            data = {}
        url = data.get("response_url") if isinstance(data, dict) else None
        return cls(response_url=url if isinstance(url, str) and url else None)


def callback_id(command: str) -> str:
    return CALLBACK_PREFIX + command.replace("-", "_")


def command_of(callback: str) -> str | None:
    name = callback.removeprefix(CALLBACK_PREFIX).replace("_", "-")
    return name if callback.startswith(CALLBACK_PREFIX) and name in COMMANDS else None


# ---------------------------------------------------------------- the test picker


def option(choice: Choice) -> Option:
    running = _("running now")
    label = f"{choice.code} · {running}" if choice.running else choice.code
    if choice.title:
        label += f" · {choice.title}"
    if len(label) > OPTION_TEXT_LIMIT:
        label = label[: OPTION_TEXT_LIMIT - 1].rstrip() + "…"
    return Option(value=choice.code, text=PlainTextObject(text=label, emoji=False))


def options(choices: list[Choice]) -> list[dict[str, Any]]:
    return [option(choice).to_dict() for choice in choices]


def _test_block(initial: Choice | None) -> InputBlock:
    return InputBlock(
        block_id="test",
        label=_("Test"),
        hint=_("Type a few letters of the code or the title; tests running now come first."),
        element=ExternalDataSelectElement(
            action_id=TEST_ACTION,
            placeholder=_("Code or title"),
            initial_option=option(initial) if initial else None,
            min_query_length=0,
        ),
    )


# ---------------------------------------------------------------- building blocks


def _text(
    block_id: str,
    label: str,
    *,
    hint: str | None = None,
    optional: bool = False,
    multiline: bool = False,
    max_length: int | None = None,
) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        hint=hint,
        optional=optional,
        element=PlainTextInputElement(
            action_id="value", multiline=multiline, max_length=max_length
        ),
    )


def _radio(
    block_id: str,
    label: str,
    choices: list[tuple[str, str]],
    *,
    chosen: str | None = None,
    action_id: str = "value",
) -> InputBlock:
    shown = [Option(value=value, label=text) for value, text in choices]
    initial = next((o for o in shown if o.value == chosen), shown[0])
    return InputBlock(
        block_id=block_id,
        label=label,
        # A choice that changes the form is sent at once (the form is then updated).
        dispatch_action=True if action_id != "value" else None,
        element=RadioButtonsElement(action_id=action_id, options=shown, initial_option=initial),
    )


def _reason(*, optional: bool = False, hint: str | None = None) -> InputBlock:
    return _text(
        "reason",
        _("Reason"),
        hint=hint
        or _("Recorded with the change. End it with --quiet to leave the candidates untold."),
        optional=optional,
        multiline=True,
        max_length=MAX_REASON,
    )


def _note(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text, verbatim=True)])


def _modal(command: str, title: str, submit: str, blocks: list, opened: Opened) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=callback_id(command),
        title=title,
        submit=submit,
        close=_("Cancel"),
        blocks=blocks,
        private_metadata=opened.metadata(),
    )
    return view.to_dict()


# ---------------------------------------------------------------- the forms


def modal(
    command: str, *, test: Choice | None, opened: Opened, mode: str | None = None
) -> dict[str, Any]:
    """The form of ``/command`` (one of COMMANDS), ``test`` chosen already when given;
    ``mode``: `/reopen`'s chosen action, whose own fields the form shows."""
    if command == "reopen":
        return _reopen(_test_block(test), opened, mode if mode in REOPEN_MODES else "until-close")
    return _BUILDERS[command](_test_block(test), opened)


def _incident_time(test: InputBlock, opened: Opened) -> dict[str, Any]:
    return _modal(
        "incident-time",
        _("Incident time"),
        _("Apply"),
        [
            test,
            _radio(
                "who",
                _("Candidates"),
                [("listed", _("The candidates below")), ("all", _("All candidates of the test"))],
            ),
            _text(
                "candidates",
                _("Candidate numbers"),
                hint=_("Separated by commas, e.g. 10023, 10024. Not used for all candidates."),
                optional=True,
            ),
            _radio(
                "operation",
                _("Change"),
                [
                    ("add", _("Add to their incident time")),
                    ("subtract", _("Subtract from it")),
                    ("set", _("Set the total")),
                ],
            ),
            _text("minutes", _("Duration"), hint=_("Minutes (15) or 1h30m, 45m, 2h.")),
            _reason(),
            _note(_("For all candidates you are asked to confirm first.")),
        ],
        opened,
    )


REOPEN_MODES = ("until-close", "at", "in", "no-limit", "close-current", "close-reverted")
# Choosing `/reopen`'s action updates the form to show that action's own fields.
MODE_ACTION = "form_reopen_mode"


def _reopen(test: InputBlock, opened: Opened, mode: str) -> dict[str, Any]:
    own: list[InputBlock] = []
    if mode == "at":
        own.append(_text("datetime", _("Until"), hint=_("YYYY-MM-DD HH:MM, or HH:MM today.")))
    if mode == "in":
        own.append(_text("duration", _("For how long"), hint=_("Minutes (30) or 1h30m, 45m.")))
    return _modal(
        "reopen",
        _("New delivery"),
        _("Apply"),
        [
            test,
            _text("candidate", _("Candidate number"), hint=_("One candidate, e.g. 10023.")),
            _radio(
                "mode",
                _("What to do"),
                [
                    ("until-close", _("Open until the candidate's own end time")),
                    ("at", _("Open until a time")),
                    ("in", _("Open for a while from now")),
                    ("no-limit", _("Open with no time limit (asks to confirm)")),
                    ("close-current", _("Close, delivering the current answer")),
                    ("close-reverted", _("Close, delivering the answer from before")),
                ],
                chosen=mode,
                action_id=MODE_ACTION,
            ),
            *own,
            _reason(
                optional=True,
                hint=_(
                    "Required to open; optional to close. End it with --quiet to leave the "
                    "candidate untold."
                ),
            ),
        ],
        opened,
    )


def _candidate(test: InputBlock, opened: Opened) -> dict[str, Any]:
    return _modal(
        "candidate",
        _("Candidate"),
        _("Show"),
        [test, _text("candidate", _("Candidate number"), hint=_("e.g. 10023"))],
        opened,
    )


def _exam(test: InputBlock, opened: Opened) -> dict[str, Any]:
    return _modal("exam", _("Test overview"), _("Show"), [test], opened)


def _notice(test: InputBlock, opened: Opened) -> dict[str, Any]:
    return _modal(
        "notice",
        _("Notice to candidates"),
        _("Preview"),
        [
            test,
            _text(
                "text_nb",
                _("Text in Norwegian"),
                optional=True,
                multiline=True,
                max_length=MAX_TEXT,
            ),
            _text(
                "text_en", _("Text in English"), optional=True, multiline=True, max_length=MAX_TEXT
            ),
            _note(
                _(
                    "Each candidate gets the text in their language, or the one text written. "
                    "You see how many get it before anything is sent."
                )
            ),
        ],
        opened,
    )


_BUILDERS = {
    "incident-time": _incident_time,
    "candidate": _candidate,
    "exam": _exam,
    "notice": _notice,
}


# ---------------------------------------------------------------- submitted


def values(view: dict[str, Any]) -> dict[str, str]:
    """{block_id: the value given} of a submitted view; "" where none was given."""
    found: dict[str, str] = {}
    for block_id, actions in (view.get("state") or {}).get("values", {}).items():
        action = next(iter(actions.values()), {}) if isinstance(actions, dict) else {}
        selected = action.get("selected_option") if isinstance(action, dict) else None
        value = selected.get("value") if isinstance(selected, dict) else action.get("value")
        found[block_id] = value if isinstance(value, str) else ""
    return found


def command_line(command: str, given: dict[str, str]) -> str:
    """The line a person would type for the submitted form of ``/command``."""
    words = [f"/{command}", _word(given, "test")]
    if command == "incident-time":
        if given.get("who") == "all":
            words.append("all")
        else:
            numbers = [n for n in re.split(r"[\s,]+", given.get("candidates", "")) if n]
            if not numbers:
                raise FormProblem(
                    "candidates", _("Give the candidate numbers, or choose all candidates.")
                )
            words.append(",".join(numbers))
        words += [given.get("operation") or "add", _duration(given, "minutes"), _free(given)]
    elif command == "reopen":
        words.append(_joined(given, "candidate", separator=","))
        mode = given.get("mode") or ""
        if mode not in REOPEN_MODES:
            raise FormProblem("mode", _("Choose what to do."))
        if mode.startswith("close-"):
            words += ["close", mode.removeprefix("close-")]
        elif mode == "at":
            when = given.get("datetime", "").split()
            if not 1 <= len(when) <= 2:
                raise FormProblem(
                    "datetime", _("Give one date and time: YYYY-MM-DD HH:MM, or HH:MM today.")
                )
            words += ["at", *when]
        elif mode == "in":
            words += ["in", _duration(given, "duration")]
        else:
            words.append(mode)
        words.append(_free(given))
    elif command == "candidate":
        words.append(_joined(given, "candidate", separator=","))
    elif command == "notice":
        texts = [
            f"{language}: {given[f'text_{language}'].strip()}"
            for language in ("nb", "en")
            if given.get(f"text_{language}", "").strip()
        ]
        if not texts:
            raise FormProblem(
                "text_nb", _("Write the text for the candidates, in Norwegian and/or English.")
            )
        words += texts
    return " ".join(word for word in words if word)


def _word(given: dict[str, str], field: str) -> str:
    value = given.get(field, "").strip()
    if not value:
        raise FormProblem(field, _("Fill in this field."))
    return value


def _joined(given: dict[str, str], field: str, *, separator: str = "") -> str:
    """One word of the command: a duration typed as ``1h 30m`` is ``1h30m``; numbers typed
    with spaces stay apart (``10023,10024``) for the core to judge."""
    value = separator.join(given.get(field, "").split())
    if not value:
        raise FormProblem(field, _("Fill in this field."))
    return value


def _duration(given: dict[str, str], field: str) -> str:
    """The duration's word, which the command must read apart from the reason after it: a
    reason beginning "30m …" after "1h" would be read as 1h30m."""
    duration = _joined(given, field)
    if duration_words([duration, *_free(given).split()])[0] != duration:
        raise FormProblem(
            "reason",
            _(
                "The reason begins like the rest of a duration; put the whole duration in "
                "its field and begin the reason with another word."
            ),
        )
    return duration


def _free(given: dict[str, str]) -> str:
    return given.get("reason", "").strip()


def errors(command: str, field: str | None, message: str) -> dict[str, Any]:
    """``response_action: errors`` on ``field`` of the form of ``/command``. A refusal of the
    request as a whole (no field, or one this form lacks: who may do it, the test's state)
    shows on the test, the form's first field."""
    fields = FIELDS[command]
    return {
        "response_action": "errors",
        "errors": {field if field in fields else fields[0]: on_field(message)},
    }


def on_field(message: str) -> str:
    """A refusal as a form shows it under a field: cut, with an ellipsis, past ERROR_LIMIT."""
    return message if len(message) <= ERROR_LIMIT else message[: ERROR_LIMIT - 1] + "…"
