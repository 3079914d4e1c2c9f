"""Text between Slack and examdesk, in one place.

Slack's rules (docs.slack.dev, "Formatting text for app surfaces"): ``&``, ``<`` and ``>``
are control characters, sent to apps and expected from them as ``&amp;``, ``&lt;``,
``&gt;``; ``<…>`` holds a control sequence: a user ``<@U123>`` or ``<@U123|ernie>``, a
channel ``<#C123|general>``, a broadcast ``<!here>``, ``<!channel>``, ``<!everyone>``, a
user group ``<!subteam^S123|@support>``, a date ``<!date^1700000000^{date}|fallback>``, a
link ``<https://x>`` or ``<https://x|label>``.

**In** (``from_slack``): a slash command's text becomes the text as typed, exactly once, at
the front door; what examdesk stores and sends to candidates is that text. A control
sequence becomes what a candidate understands without Slack:

- a user → ``@ernie`` (``@U123`` when Slack sent no name); a channel → ``#general``;
- a broadcast → ``@here``, ``@channel``, ``@everyone``; a user group → its label;
- a date → its fallback text;
- a link → its URL, or ``label (URL)`` when the label is not the URL as typed: nobody is
  sent somewhere the text hides.

Text typed in a terminal (``examdesk run``) was never escaped and does not come here; nor
do a modal's plain-text inputs, which Slack hands over as typed.

**Out** (``mrkdwn``, ``fallback``): everything examdesk puts into Slack's mrkdwn, blocks and
the message's fallback ``text`` alike, is escaped, so what someone typed (a reason, a
notice, a name) shows as text and cannot ping, broadcast or link. Only the mentions the
core declares (``Reply.mentions``) or the bot writes itself (``mention``) stay mentions.
Blocks built from this text carry ``verbatim`` so Slack does not turn a typed ``@channel``
into a broadcast either. The fallback text is capped well below Slack's 40,000 characters
and ends with "… and N more" where it was cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FALLBACK_LIMIT = 3000

_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_SEQUENCE = re.compile(r"<([^<>]*)>")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:(?://)?", re.IGNORECASE)
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
# A cut must not split an entity (&amp;) or a mention (<@U…>).
_OPEN_AT_END = re.compile(r"&[a-z]{0,3}$|<@?[A-Z0-9]*$")


# ---------------------------------------------------------------- in


def unescape(text: str) -> str:
    """Slack's three entities back to their characters, in one pass (``&amp;lt;`` → ``&lt;``)."""
    return _ENTITY.sub(lambda m: _ENTITIES[m[1]], text)


def from_slack(text: str) -> str:
    """A slash command's text as the user typed it (see the module's docstring)."""
    parts, at = [], 0
    for sequence in _SEQUENCE.finditer(text):
        parts += [unescape(text[at : sequence.start()]), _plain(sequence[1])]
        at = sequence.end()
    parts.append(unescape(text[at:]))
    return "".join(parts)


def _plain(sequence: str) -> str:
    target, _, label = (unescape(part) for part in sequence.partition("|"))
    if target.startswith("@"):
        return "@" + (label or target[1:]).lstrip("@")
    if target.startswith("#"):
        return "#" + (label or target[1:]).lstrip("#")
    if target.startswith("!date^"):
        return label
    if target.startswith("!"):
        # !here, !channel, !everyone, !subteam^S123: the label, else the last word.
        return "@" + (label or target[1:].rpartition("^")[2]).lstrip("@")
    if not label or label in (target, _SCHEME.sub("", target)):
        return label or target
    return f"{label} ({target})"


# ---------------------------------------------------------------- out


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user: str) -> str:
    """A mention of a Slack user; anything that is not a user id stays text."""
    return f"<@{user}>" if _USER_ID.fullmatch(user) else escape(user)


def mrkdwn(text: str, mentions: Iterable[str] = ()) -> str:
    """``text`` for Slack: nothing in it is a mention, link or broadcast but the ``<@U…>``
    of the users in ``mentions``."""
    escaped = escape(text)
    for user in dict.fromkeys(mentions):
        if _USER_ID.fullmatch(user):
            escaped = escaped.replace(f"&lt;@{user}&gt;", f"<@{user}>")
    return escaped


def capped(text: str, limit: int = FALLBACK_LIMIT) -> str:
    """Already-escaped ``text`` in at most ``limit`` characters: whole lines while they fit,
    then "… and N more lines" (or, within one long line, "… and N more characters")."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    kept, size = [], 0
    room = limit - len(f"\n… and {len(lines)} more lines")
    for line in lines:
        if size + len(line) + 1 > room:
            break
        kept.append(line)
        size += len(line) + 1
    if kept:
        return "\n".join(kept) + f"\n… and {len(lines) - len(kept)} more lines"
    head = text[: limit - len(f" … and {len(text)} more characters")]
    head = head[: _OPEN_AT_END.search(head).start()] if _OPEN_AT_END.search(head) else head
    return f"{head} … and {len(text) - len(head)} more characters"


def fallback(text: str, mentions: Iterable[str] = ()) -> str:
    """A message's fallback ``text``: escaped as ``mrkdwn`` and capped."""
    return capped(mrkdwn(text, mentions))


def text_object(text: str) -> dict[str, Any]:
    """A mrkdwn text object for already-escaped ``text``."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}
