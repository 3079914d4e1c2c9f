"""What text typed by people or exported by the registry may hold, and how it is quoted back."""

from __future__ import annotations

import re

from commands.errors import InvalidInput
from commands.language import _

# Control characters other than tab and line breaks: never typed on purpose, a sign of a
# broken export, and PostgreSQL cannot store NUL.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# Characters that show as nothing (zero-width, direction marks, byte order mark), often
# pasted along with a code: quoted back as they are, "There is no test TDT4100-2026H" would
# name a test that exists.
INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


# Explicit direction formatting: embeddings, overrides and isolates (not the marks, such as
# U+200E, which turn nothing around). One left open turns around whatever follows it where
# the text is shown, examdesk's own words on the same line too: "+10 min for 10023 by Kari"
# can be made to read as something else in the change log, the report or a page.
DIRECTION = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


# Spaces and invisible characters at the ends of a text, where they mean nothing.
_EDGES = re.compile(rf"^(?:\s|{INVISIBLE.pattern})+|(?:\s|{INVISIBLE.pattern})+$")


def trimmed(text: str) -> str:
    """``text`` without spaces and invisible characters at its ends: a zero-width space
    pasted alone is no text, as a space alone is."""
    return _EDGES.sub("", text)


def clip(text: str, limit: int = 40) -> str:
    """User text quoted back in a message, cut short so a pasted essay stays readable, with
    its invisible characters shown (``<U+200B>``)."""
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return INVISIBLE.sub(lambda found: f"<U+{ord(found[0]):04X}>", shown)


def refuse_direction_controls(text: str, *, what: str, outcome: str = "") -> str:
    """``text`` as it is, refused when it holds a direction control (``DIRECTION``).
    ``what`` names the text in the refusal ("The reason"); ``outcome`` ends it ("Nothing was
    sent.")."""
    found = DIRECTION.search(text)
    if found is None:
        return text
    message = _(
        "{what} holds the invisible character U+{code:04X}, which turns around the text "
        "shown after it. Type it again without that character (paste it as plain text)."
    ).format(what=what, code=ord(found[0]))
    raise InvalidInput(f"{message} {outcome}" if outcome else message)
