"""Bolt listeners, one module per feature; each has ``register(app, deps)``."""

from __future__ import annotations

from typing import Any

from bot.slack.listeners import commands, forms, home, question_errors

MODULES = (commands, forms, home, question_errors)


def register_all(app: Any, deps: Any) -> None:
    for module in MODULES:
        module.register(app, deps)
