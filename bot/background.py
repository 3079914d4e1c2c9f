"""Placeholder: the scheduler feature starts the background work of `examdesk serve` here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def start(deps: Any) -> Callable[[], None]:
    return lambda: None
