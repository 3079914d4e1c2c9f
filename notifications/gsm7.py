"""GSM 03.38 (GSM-7): the alphabet an SMS must stay in to be 160 characters per segment.

Norwegian æøå/ÆØÅ are in it; curly quotes, dashes, non-breaking spaces and the ellipsis are
not, and a single one of them turns the whole SMS into UCS-2 (70 characters per segment).
"""

from __future__ import annotations

import unicodedata

BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Escaped with ESC: each takes two septets.
EXTENSION = "\f^{}\\[~]|€"
_BASIC = frozenset(BASIC)
_EXTENSION = frozenset(EXTENSION)
SINGLE_SEGMENT = 160
MULTI_SEGMENT = 153

REPLACEMENTS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u00b4": "'",
    "`": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u00a0": " ",
    "\u2007": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u202f": " ",
    "\t": " ",
    "\u2026": "...",
    "\u2022": "*",
    "\u00b7": "-",
    "\u200b": "",
    "\ufeff": "",
}


def is_gsm7(text: str) -> bool:
    return all(ch in _BASIC or ch in _EXTENSION for ch in text)


def septets(text: str) -> int:
    """Length in septets (extension characters count twice); text must be GSM-7."""
    return sum(2 if ch in _EXTENSION else 1 for ch in text)


def segments(text: str) -> int:
    length = septets(text)
    if length <= SINGLE_SEGMENT:
        return 1
    return -(-length // MULTI_SEGMENT)


def to_gsm7(text: str) -> str:
    """The closest GSM-7 text: typographic marks replaced, accents dropped where needed."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in _BASIC or ch in _EXTENSION:
            out.append(ch)
        elif ch in REPLACEMENTS:
            out.append(REPLACEMENTS[ch])
        else:
            # "á" → "a", "ő" → "o": the base letter reads better than a question mark.
            base = unicodedata.normalize("NFKD", ch)[:1]
            out.append(base if base in _BASIC else "?")
    return "".join(out)
