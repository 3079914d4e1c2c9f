"""What a command costs in-process, back to back ("hot") and after an idle pause ("cold").

A server between two Slack requests sits idle: the CPU halts and what the interpreter had in
its caches is gone when the next request arrives. Timing commands back to back in a loop
hides that, and so ranks changes wrongly: fewer statements and less ORM code count for far
more cold than hot. This runs each command through `confirmations.run_offering` and the Block
Kit layout, as the Slack listener does, on the benchmark's database (20,000 candidates), and
reports the thread CPU time per command, p50: hot = the five commands in turn without a
pause, cold = each after an idle pause.

    python -m bench.cold            # add --pause-ms 4 (default) to change the idle pause
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import PER_TEST, SUPPORT_USER, create_database, table, test_code
from bot.slack.views import blocks
from commands import confirmations
from store import clock
from store.db import make_session_factory

TESTS = 10
TZ = ZoneInfo("Europe/Oslo")


def command_lines(i: int) -> dict[str, str]:
    code, number = test_code(i % TESTS), str(10000 + (i * 7919) % PER_TEST)
    return {
        "/candidate": f"/candidate {code} {number}",
        "/exam": f"/exam {code}",
        "/incident-time": f"/incident-time {code} {number} add 1 bench",
        "/reopen": f"/reopen {code} {number} until-close bench",
        "/incident-time all (preview)": f"/incident-time {code} all add 1 bench",
    }


def cpu_ms(run: Callable[[], None]) -> float:
    started = time.thread_time()
    run()
    return (time.thread_time() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--pause-ms", type=float, default=4.0, help="idle pause before a cold run")
    args = parser.parse_args(argv)
    db = create_database(database_url=None, tests=TESTS)
    session_factory = make_session_factory(db.engine)

    def run(line: str) -> None:
        reply = confirmations.run_offering(
            session_factory=session_factory,
            actor=SUPPORT_USER,
            command_line=line,
            tz=TZ,
            now=clock.now(),
        )
        if not reply.ok:
            raise RuntimeError(f"{line}: {reply.text}")
        blocks.message(reply, tz=TZ)

    try:
        for i in range(100):  # warm-up: imports, statement caches, the page cache
            for line in command_lines(i).values():
                run(line)
        hot: dict[str, list[float]] = {k: [] for k in command_lines(0)}
        cold: dict[str, list[float]] = {k: [] for k in command_lines(0)}
        for i in range(100, 100 + args.rounds):
            for kind, line in command_lines(i).items():
                hot[kind].append(cpu_ms(lambda line=line: run(line)))
            for kind, line in command_lines(i + args.rounds).items():
                time.sleep(args.pause_ms / 1000)
                cold[kind].append(cpu_ms(lambda line=line: run(line)))
    finally:
        db.close()
    rows = []
    for kind in hot:
        h, c = statistics.median(hot[kind]), statistics.median(cold[kind])
        rows.append([kind, f"{h:.2f}", f"{c:.2f}", f"{c / h:.1f}"])
    print(f"CPU ms per command, p50 of {args.rounds}; cold = after {args.pause_ms:g} ms idle")
    print(table(["command", "hot", "cold", "cold / hot"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
