"""Slack's limits on what an app sends (../shared/FACTS.md, docs.slack.dev), in one place,
and ``fit``: the one function every outgoing message, modal and Home view passes through on
its way out, so that Slack never refuses one for its size.

What does not fit is cut, never dropped silently: a list of blocks ends with "… and N more",
a long text is cut on a line or word boundary and ends with an ellipsis (or "… and N more
lines"). A cut never splits an entity (``&amp;``), a mention (``<@U…>``) or a code block.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Literal

from commands.language import _, ngettext

MESSAGE, MODAL, HOME = "message", "modal", "home"
Surface = Literal["message", "modal", "home"]

BLOCKS = {MESSAGE: 50, MODAL: 100, HOME: 100}
MESSAGE_TEXT = 40_000  # a message's fallback ``text``
VIEW_BYTES = 250_000
SECTION_TEXT = 3000
FIELDS = 10
FIELD_TEXT = 2000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
CONTEXT_TEXT = 3000
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
ACTION_ID = 255
BLOCK_ID = 255
SELECT_OPTIONS = 100
OVERFLOW_OPTIONS = 5
OPTION_TEXT = 75
OPTION_VALUE = 150
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30
MODAL_TITLE = 24  # a modal's title, submit and close
PRIVATE_METADATA = 3000
INPUT_LABEL = 2000
INPUT_HINT = 2000
PLACEHOLDER = 150
PLAIN_TEXT_INPUT = 3000  # a plain-text input's max_length and initial value

ELLIPSIS = "…"
_OPEN_AT_END = re.compile(r"&[a-z]{0,4}$|<[^<>]*$")
# A break within the last part of the room is a boundary worth cutting on.
_BOUNDARY_SHARE = 0.8
# Whole lines, when those that fit fill this much of the room; else the text is cut within
# its first long line.
_LINES_SHARE = 0.4


# ---------------------------------------------------------------- text


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: whole lines while they fit, then "… and N
    more lines"; within one long line, cut after a word with an ellipsis."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    if len(lines) > 1:
        kept: list[str] = []
        size = 0
        for index, line in enumerate(lines):
            # Room for the last line, and to close a code block the cut is in.
            tail = "\n" + _more_lines(len(lines) - index) + "```"
            if size + len(line) + 1 + len(tail) > limit:
                break
            kept.append(line)
            size += len(line) + 1
        if kept and size >= limit * _LINES_SHARE:
            return _closed("\n".join(kept)) + "\n" + _more_lines(len(lines) - len(kept))
    return _cut(text, limit)


def _more_lines(n: int) -> str:
    return ngettext("… and {n} more line", "… and {n} more lines", n).format(n=n)


def _cut(text: str, limit: int) -> str:
    room = limit - len(ELLIPSIS) - 3  # and room to close a code block
    head = text[:room]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= room * _BOUNDARY_SHARE:
        head = head[:space]
    found = _OPEN_AT_END.search(head)
    if found:
        head = head[: found.start()]
    return _closed(head.rstrip() + ELLIPSIS)


def _closed(text: str) -> str:
    """A cut inside a code block (```) closes it, so the rest is not shown as code."""
    return text + "```" if text.count("```") % 2 else text


def _text(obj: Any, limit: int) -> None:
    """A text object (``{"type": …, "text": …}``) or a plain string field, cut in place."""
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = shorten(obj["text"], limit)


def _plain(obj: dict[str, Any], key: str, limit: int) -> None:
    if isinstance(obj.get(key), dict):
        _text(obj[key], limit)


def _string(obj: dict[str, Any], key: str, limit: int) -> None:
    if isinstance(obj.get(key), str) and len(obj[key]) > limit:
        obj[key] = obj[key][:limit]


# ---------------------------------------------------------------- elements and blocks


def _more_option(n: int) -> dict[str, Any]:
    label = _("… and {n} more").format(n=n)
    return {"text": {"type": "plain_text", "text": shorten(label, OPTION_TEXT)}, "value": "_more"}


def _options(options: list[Any], most: int) -> list[Any]:
    for option in options:
        if isinstance(option, dict):
            _plain(option, "text", OPTION_TEXT)
            _plain(option, "description", OPTION_TEXT)
            _string(option, "value", OPTION_VALUE)
    if len(options) <= most:
        return options
    return [*options[: most - 1], _more_option(len(options) - most + 1)]


def _confirm(confirm: dict[str, Any]) -> None:
    _plain(confirm, "title", CONFIRM_TITLE)
    _plain(confirm, "text", CONFIRM_TEXT)
    _plain(confirm, "confirm", CONFIRM_BUTTON)
    _plain(confirm, "deny", CONFIRM_BUTTON)


def _element(element: dict[str, Any]) -> None:
    kind = element.get("type")
    _string(element, "action_id", ACTION_ID)
    if kind == "button":
        _plain(element, "text", BUTTON_TEXT)
        _string(element, "value", BUTTON_VALUE)
    _plain(element, "placeholder", PLACEHOLDER)
    if isinstance(element.get("confirm"), dict):
        _confirm(element["confirm"])
    most = OVERFLOW_OPTIONS if kind == "overflow" else SELECT_OPTIONS
    if isinstance(element.get("options"), list):
        element["options"] = _options(element["options"], most)
    for group in element.get("option_groups") or []:
        _plain(group, "label", OPTION_TEXT)
        group["options"] = _options(group.get("options") or [], SELECT_OPTIONS)
    if kind == "plain_text_input":
        most_chars = min(int(element.get("max_length") or PLAIN_TEXT_INPUT), PLAIN_TEXT_INPUT)
        element["max_length"] = most_chars
        if isinstance(element.get("initial_value"), str):
            element["initial_value"] = element["initial_value"][:most_chars]


def _context_elements(elements: list[Any]) -> list[Any]:
    for element in elements:
        if isinstance(element, dict) and element.get("type") in ("mrkdwn", "plain_text"):
            _text(element, CONTEXT_TEXT)
    if len(elements) <= CONTEXT_ELEMENTS:
        return elements
    more = len(elements) - CONTEXT_ELEMENTS + 1
    return [*elements[: CONTEXT_ELEMENTS - 1], _more_text(more)]


def _more_text(n: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _("… and {n} more").format(n=n), "verbatim": True}


def _block(block: dict[str, Any]) -> None:
    kind = block.get("type")
    _string(block, "block_id", BLOCK_ID)
    if kind == "section":
        _plain(block, "text", SECTION_TEXT)
        if isinstance(block.get("fields"), list):
            fields = block["fields"][:FIELDS]
            for field in fields:
                _text(field, FIELD_TEXT)
            block["fields"] = fields
        if isinstance(block.get("accessory"), dict):
            _element(block["accessory"])
    elif kind == "header":
        _plain(block, "text", HEADER_TEXT)
    elif kind == "context":
        block["elements"] = _context_elements(list(block.get("elements") or []))
    elif kind == "actions":
        elements = list(block.get("elements") or [])[:ACTIONS_ELEMENTS]
        for element in elements:
            if isinstance(element, dict):
                _element(element)
        block["elements"] = elements
    elif kind == "input":
        _plain(block, "label", INPUT_LABEL)
        _plain(block, "hint", INPUT_HINT)
        if isinstance(block.get("element"), dict):
            _element(block["element"])


def _controls(blocks: list[dict[str, Any]]) -> int:
    """How many blocks at the end are the message's controls (its buttons, and the line
    under them): they stay when the middle is cut."""
    kinds = [block.get("type") for block in blocks[-2:]]
    if kinds[-1:] == ["actions"]:
        return 1
    return 2 if kinds == ["actions", "context"] else 0


def _cut_blocks(blocks: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    if len(blocks) <= most:
        return blocks
    tail = _controls(blocks)
    keep = most - 1 - tail
    more = len(blocks) - keep - tail
    cut = {"type": "context", "elements": [_more_text(more)]}
    return [*blocks[:keep], cut, *blocks[len(blocks) - tail :]]


def _size(payload: dict[str, Any]) -> int:
    """The payload's size as slack_sdk and Bolt send it (non-ASCII as \\u escapes)."""
    return len(json.dumps(payload))


# ---------------------------------------------------------------- the one way out


def fit(payload: dict[str, Any], surface: Surface = MESSAGE) -> dict[str, Any]:
    """A copy of ``payload`` (a message's arguments or a view) within Slack's limits for
    ``surface``; a payload that fits comes back equal."""
    fitted = copy.deepcopy(payload)
    if isinstance(fitted.get("text"), str):
        fitted["text"] = shorten(fitted["text"], MESSAGE_TEXT)
    if surface != MESSAGE:
        for key in ("title", "submit", "close"):
            _plain(fitted, key, MODAL_TITLE)
        _string(fitted, "private_metadata", PRIVATE_METADATA)
    blocks = fitted.get("blocks")
    if not isinstance(blocks, list):
        return fitted
    for block in blocks:
        if isinstance(block, dict):
            _block(block)
    most = BLOCKS[surface]
    fitted["blocks"] = _cut_blocks(blocks, most)
    # Many long blocks can still weigh more than Slack takes: fewer blocks, then.
    while _size(fitted) > VIEW_BYTES and most > 2:
        most = max(2, most * 3 // 4)
        fitted["blocks"] = _cut_blocks(blocks, most)
    return fitted
