"""`examdesk serve` with one extra slash command, `/bench-noop`, that only acknowledges.

The benchmark's floor must go through the very stack the commands go through (uvicorn,
Starlette, Bolt's signature check, middleware and ack), so this runs the real `serve` entry
point and only adds that listener to the Bolt app it builds. Production code is untouched.
With `--probes`, also the lower-bound commands of bench/_probes.py (for bench/bound.py).
With BENCH_REGISTRY_MINUTES, the scheduler refreshes the registry (R11) that often instead of
every 30 minutes, so that an export dropped into REGISTRY_DIR lands within a benchmark's run
(bench/storm.py).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import bot.runtime.server
from bench import _probes
from bot.runtime import cli, scheduler

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

REGISTRY_MINUTES = os.environ.get("BENCH_REGISTRY_MINUTES")
_start_scheduler = scheduler.start_scheduler


def _start_scheduler_with_cadence(*args: Any, cadence: Any = None, **kwargs: Any):
    if cadence is None and REGISTRY_MINUTES:
        cadence = scheduler.Cadence(registry_minutes=float(REGISTRY_MINUTES))
    return _start_scheduler(*args, cadence=cadence, **kwargs)


scheduler.start_scheduler = _start_scheduler_with_cadence

if __name__ == "__main__":
    sys.exit(cli.main(["serve"]))
