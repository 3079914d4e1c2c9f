"""What text typed by people or exported by the registry may hold, and how it is quoted back."""

from __future__ import annotations

import re

# Control characters other than tab and line breaks: never typed on purpose, a sign of a
# broken export, and PostgreSQL cannot store NUL.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clip(text: str, limit: int = 40) -> str:
    """User text quoted back in a message, cut short so a pasted essay stays readable."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
