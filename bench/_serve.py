"""`examdesk serve` with one extra slash command, `/bench-noop`, that only acknowledges.

The benchmark's floor must go through the very stack the commands go through (uvicorn,
Starlette, Bolt's signature check, middleware and ack), so this runs the real `serve` entry
point and only adds that listener to the Bolt app it builds. Production code is untouched.
With `--probes`, also the lower-bound commands of bench/_probes.py (for bench/bound.py).
"""

from __future__ import annotations

import sys
from typing import Any

import bot.runtime.server
from bench import _probes
from bot.runtime import cli

NOOP = "/bench-noop"
PROBES = "--probes" in sys.argv[1:]
_build_app = bot.runtime.server.build_app


def _build_app_with_noop(deps: Any, **kwargs: Any):
    app = _build_app(deps, **kwargs)

    @app.command(NOOP)
    def noop(ack: Any) -> None:
        ack()

    if PROBES:
        _probes.register(app, deps.engine)
    return app


bot.runtime.server.build_app = _build_app_with_noop

if __name__ == "__main__":
    sys.exit(cli.main(["serve"]))
