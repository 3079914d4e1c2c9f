"""Staff-facing text in the reader's language: one gettext catalogue, read with Babel.

The English text is the message id; ``commands/locale/nb/LC_MESSAGES/messages.po`` holds the
Norwegian (bokmål). Front doors choose the language once per request with ``speaking``; the
code that words a reply calls ``_`` or ``ngettext`` and need not pass the language along.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LANGUAGES = ("nb", "en")
DEFAULT = "en"
# Babel's locale for numbers, dates and lists in each language.
LOCALES = {"nb": "nb_NO", "en": "en_GB"}
CATALOGUE = Path(__file__).parent / "locale"

_current: ContextVar[str] = ContextVar("language", default=DEFAULT)


def language_of(value: str | None) -> str | None:
    """``value`` as one of LANGUAGES (``nb``, ``nb-NO``, ``no``, ``en_US`` …), else None."""
    if not value:
        return None
    base = value.replace("_", "-").split("-")[0].lower()
    if base in ("nb", "no", "nn"):
        return "nb"
    return "en" if base == "en" else None


@contextmanager
def speaking(language: str | None) -> Iterator[str]:
    """Word everything inside in ``language`` (English when it is not one of LANGUAGES)."""
    chosen = language_of(language) or DEFAULT
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def choose(language: str | None) -> str:
    """Word the rest of the current context in ``language``: for a front door that cannot
    wrap its request in ``speaking`` (Bolt runs the listener after its middleware returned;
    each request runs in a context of its own or chooses again first)."""
    chosen = language_of(language) or DEFAULT
    _current.set(chosen)
    return chosen


def current() -> str:
    return _current.get()


def locale() -> str:
    """Babel's locale for the current language."""
    return LOCALES[_current.get()]


def number(value: int) -> str:
    """A count as the reader writes it: ``2 000`` in Norwegian; English keeps ``2000``, as
    examdesk has always written it."""
    if _current.get() == DEFAULT:
        return str(value)
    return format_decimal(value, locale=locale())


def N_(message: str) -> str:
    """Marks ``message`` for the catalogue where it is defined (a table of labels); it is
    translated with ``_`` where it is shown, in the reader's language then."""
    return message


def _(message: str) -> str:
    return _translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translations(_current.get()).ngettext(singular, plural, n)


@cache
def _translations(language: str) -> NullTranslations:
    path = CATALOGUE / language / "LC_MESSAGES" / "messages.po"
    if language == DEFAULT or not path.exists():
        return NullTranslations()
    with path.open("rb") as po:
        catalogue = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(fp=compiled)
