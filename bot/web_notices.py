"""Placeholder: filled in by the notifier feature."""

from __future__ import annotations

from typing import Any


def routes(deps: Any) -> list[Any]:
    return []
