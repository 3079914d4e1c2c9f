"""Placeholder: filled in by the feature that owns this listener module."""

from __future__ import annotations

from typing import Any


def register(app: Any, deps: Any) -> None:
    return None
