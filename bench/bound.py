"""How close to the floor can any command get, 8 at a time, on this machine and stack?

`bench/commands.py` compares every command with `/bench-noop`, a Bolt command that only
acknowledges. This puts two lower bounds beside them, served by the same `examdesk serve`
process (`python -m bench._serve --probes`, see bench/_probes.py):

- `/bench-read`: one hand-written `sqlite3` SELECT of the candidate, then `/candidate`'s own
  reply. Any command that reads the database and answers does at least this.
- `/bench-write`: in one `BEGIN IMMEDIATE` transaction, that SELECT, an UPDATE of the
  candidate and an INSERT of its change record, then the same reply. Any command that
  changes a candidate (R12: every change is recorded) does at least this.

Both skip what the real commands must do besides (R15's permission check, the deadline
arithmetic, the change log posted to Slack), so their ratios to the floor bound the
commands' from below. Every kind runs in its own phase, CONCURRENCY at a time, in rounds of
every phase in turn, like bench.commands.

    python -m bench.bound            # 20,000 candidates, about 40 s

SQLite only (the probes are raw sqlite3). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _probes
from bench._fake_slack import RemoteSlack
from bench._support import (
    PER_TEST,
    Child,
    create_database,
    machine,
    table,
    test_code,
)
from bench.commands import (
    CONCURRENCY,
    FLOOR,
    Client,
    Workload,
    concurrent,
    start_server,
    stats,
)

KINDS = (FLOOR, _probes.READ, "/candidate", "/exam", _probes.WRITE, "/incident-time", "/reopen")
TESTS = 10


class ProbeWorkload(Workload):
    def request(self, kind: str, i: int) -> tuple[str, str]:
        if kind in (_probes.READ, _probes.WRITE):
            return kind, " ".join(self.target(i))
        return super().request(kind, i)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of every phase in turn")
    parser.add_argument(
        "--per-thread", type=int, default=60, help="requests of each kind per client, in all"
    )
    args = parser.parse_args(argv)

    db = create_database(database_url=None, tests=TESTS)
    reply = tempfile.NamedTemporaryFile(prefix="examdesk-probe-reply-", suffix=".json")  # noqa: SIM115
    slack = RemoteSlack()
    clients: list[Client] = []
    server: Child | None = None
    try:
        server, base_url = start_server(db, slack, "--probes", BENCH_PROBE_REPLY=reply.name)
        clients = [Client(base_url, slack.response_url()) for _ in range(CONCURRENCY)]
        work = ProbeWorkload(TESTS)
        _, card = clients[0].command("/candidate", f"{test_code(0)} 10000")
        reply.write(card.content)
        reply.flush()
        warm: dict[str, list[float]] = defaultdict(list)
        for i in range(30):
            for kind in KINDS:
                work.one(clients[0], kind, 20_000 + i, warm)
        cpu: dict[str, dict[str, float]] = {}
        per_kind = dict.fromkeys(KINDS, args.per_thread)
        samples = concurrent(
            clients, work, per_kind, cpu=cpu, server_pid=server.pid, rounds=args.rounds
        )
    finally:
        for client in clients:
            client.close()
        if server is not None:
            server.stop()
        slack.close()
        reply.close()
        db.close()

    floor = stats(samples[FLOOR])
    measured = {kind: stats(samples[kind]) for kind in KINDS}
    p50 = {kind: round(st["p50_ms"] / floor["p50_ms"], 2) for kind, st in measured.items()}
    p99 = {kind: round(st["p99_ms"] / floor["p99_ms"], 2) for kind, st in measured.items()}
    print()
    print(f"{CONCURRENCY} at a time, {args.rounds} rounds of every phase in turn")
    print(
        table(
            ["request", "n", "p50 ms", "p99 ms", "p50/floor", "p99/floor", "server CPU ms/req"],
            [
                [
                    kind,
                    st["n"],
                    f"{st['p50_ms']:.2f}",
                    f"{st['p99_ms']:.2f}",
                    f"{p50[kind]:.2f}",
                    f"{p99[kind]:.2f}",
                    f"{cpu[kind]['server_ms']:.2f}",
                ]
                for kind, st in measured.items()
            ],
        )
    )
    result = {
        "bench": "bound",
        "candidates": TESTS * PER_TEST,
        "concurrency": CONCURRENCY,
        "rounds": args.rounds,
        "p50_vs_floor": p50,
        "p99_vs_floor": p99,
        "server_cpu_ms_per_request": {kind: cpu[kind]["server_ms"] for kind in KINDS},
        "machine": machine(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
