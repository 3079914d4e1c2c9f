"""Bolt listeners, one module per feature; each has ``register(app, deps)``."""

from __future__ import annotations

from typing import Any

from bot.slack.listeners import commands, home, question_errors

MODULES = (commands, home, question_errors)


def register_all(app: Any, deps: Any) -> None:
    for module in MODULES:
        module.register(app, deps)
