"""Slash-command latency of `examdesk serve`, against the floor of the same stack.

The floor is `/bench-noop`, a Bolt command that only acknowledges, served by the same
`examdesk serve` process (see bench/_serve.py): signed HTTP request, uvicorn, Starlette, Bolt's
signature check and middleware, ack. Every command is sent the same way, signed like Slack
signs it, first one at a time (interleaved rounds, so drift hits all alike; each round
once the change-log posts of the one before have arrived, as for one person working alone)
and then CONCURRENCY at a time (each kind in its own phase, compared with the noop at the
same concurrency; information, without targets). `/incident-time … all` is measured as
Slack users do it: the command answers with a preview, and the confirm button's interaction
applies it; that click is timed and compared with a raw single-statement UPDATE of the same
2,000 rows on the same database.

    python -m bench.commands --quick            # 20,000 candidates, < 1 minute
    python -m bench.commands                    # 100,000 candidates
    python -m bench.commands --database-url postgresql+psycopg://postgres@127.0.0.1:54320/examdesk_bench

The last line of output is one JSON object (see bench/README.md).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
from sqlalchemy import text

from bench._fake_slack import RemoteSlack
from bench._support import (
    PER_TEST,
    SECRET,
    SUPPORT_USER,
    Child,
    Database,
    SlackSender,
    Target,
    child_env,
    create_database,
    finish,
    free_port,
    machine,
    percentile,
    table,
    test_code,
    wait_for,
)
from bot.slack.views.blocks import CONFIRM_ACTION

CONCURRENCY = 8
# 8 at a time, every kind's phase comes round this often (see concurrent()).
CONCURRENT_ROUNDS = 5
FLOOR = "floor"
ALL_PREVIEW = "/incident-time all (preview)"
ALL_APPLY = "/incident-time all (confirm)"
RAW_UPDATE = "raw UPDATE 2,000 rows"
# Kinds judged against the floor; the apply of `all` is judged against the raw UPDATE.
AGAINST_FLOOR = ("/candidate", "/exam", "/incident-time", "/reopen", ALL_PREVIEW)
UPDATE_SQL = text(
    "UPDATE candidates SET incident_minutes = incident_minutes + 1 WHERE test_id = :test_id"
)


class Client:
    """One connection (keep-alive), like one Slack edge connection, sending signed requests."""

    def __init__(self, base_url: str, response_url: str) -> None:
        self.sender = SlackSender(base_url, secret=SECRET)
        self.response_url = response_url
        self.n = 0

    def _response_url(self) -> str:
        # Each request a body of its own: the same signed body twice in one second is a
        # replay to the Slack door, and this client sends the same command again soon.
        self.n += 1
        return f"{self.response_url}?n={self.n}"

    def command(self, name: str, text_: str) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = self.sender.command(
            name, text_, user=SUPPORT_USER, response_url=self._response_url()
        )
        elapsed = time.perf_counter() - started
        _expect_ok(response, name, text_)
        return elapsed, response

    def confirm(self, token: str) -> float:
        started = time.perf_counter()
        response = self.sender.click(
            CONFIRM_ACTION, token, user=SUPPORT_USER, response_url=self._response_url()
        )
        elapsed = time.perf_counter() - started
        _expect_ok(response, "confirm", token)
        return elapsed

    def close(self) -> None:
        self.sender.close()


def _expect_ok(response: httpx.Response, name: str, text_: str) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{name} {text_}: HTTP {response.status_code} {response.text[:300]}")
    if response.content and ":warning:" in response.text:
        raise RuntimeError(f"{name} {text_} was refused: {response.text[:500]}")


def confirm_token(response: httpx.Response) -> str:
    for block in response.json().get("blocks", []):
        for element in block.get("elements", []):
            if element.get("action_id") == CONFIRM_ACTION:
                return element["value"]
    raise RuntimeError(f"no confirm button in the preview: {response.text[:500]}")


class Workload:
    """Which candidate and test each request is about; spread so that no row is hot."""

    def __init__(self, tests: int) -> None:
        self.tests = tests

    def target(self, i: int) -> tuple[str, str]:
        """The test code and candidate number of request ``i``."""
        return test_code(i % self.tests), str(10000 + (i * 7919) % PER_TEST)

    def request(self, kind: str, i: int) -> tuple[str, str]:
        code, number = self.target(i)
        if kind == FLOOR:
            return "/bench-noop", ""
        if kind == "/candidate":
            return "/candidate", f"{code} {number}"
        if kind == "/exam":
            return "/exam", code
        if kind == "/incident-time":
            return "/incident-time", f"{code} {number} add 1 bench {i}"
        if kind == "/reopen":
            return "/reopen", f"{code} {number} until-close bench {i}"
        if kind == ALL_PREVIEW:
            return "/incident-time", f"{code} all add 1 bench {i}"
        raise ValueError(kind)

    def one(self, client: Client, kind: str, i: int, into: dict[str, list[float]]) -> None:
        if kind == ALL_APPLY:
            # Its own text: the same signed request twice in a second is a replay to the door.
            command, text_ = self.request(ALL_PREVIEW, i)
            elapsed, preview = client.command(command, f"{text_} apply")
            into[ALL_PREVIEW].append(elapsed)
            into[ALL_APPLY].append(client.confirm(confirm_token(preview)))
            return
        elapsed, _ = client.command(*self.request(kind, i))
        into[kind].append(elapsed)


def raw_update(engine, test_id: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(UPDATE_SQL, {"test_id": test_id})
    return time.perf_counter() - started


def sequential(
    client: Client,
    work: Workload,
    engine,
    test_ids: list[int],
    rounds: int,
    all_every: int,
    settled: Settled,
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = defaultdict(list)
    kinds = [FLOOR, "/candidate", "/exam", "/incident-time", "/reopen"]
    for i in range(rounds):
        for kind in kinds:
            work.one(client, kind, i, samples)
        settled.sent(changes=2, applies=0)
        # One person at a time: the next round starts once the Slack messages the server
        # sends after a response (change logs, the click's receipt) have arrived.
        settled.wait()
        if i % all_every == 0:
            work.one(client, ALL_APPLY, i, samples)
            settled.sent(changes=0, applies=1)
            settled.wait()
            samples[RAW_UPDATE].append(raw_update(engine, test_ids[(i + 1) % len(test_ids)]))
    return samples


class Settled:
    """Waits until the Slack messages of the changes sent so far have reached the fake API.

    Every change (/incident-time, /reopen, an applied confirmation) posts its change log; an
    applied confirmation also sends its receipt to response_url.
    """

    def __init__(self, slack: RemoteSlack) -> None:
        self.slack = slack
        self.posts = 0
        self.receipts = 0

    def sent(self, *, changes: int, applies: int) -> None:
        self.posts += changes + applies
        self.receipts += applies

    def wait(self) -> None:
        self.slack.wait_for("response_url", count=self.receipts)
        self.slack.wait_for("chat.postMessage", count=self.posts)


def concurrent(
    clients: list[Client],
    work: Workload,
    per_thread: dict[str, int],
    cpu: dict[str, dict[str, float]] | None = None,
    server_pid: int | None = None,
    rounds: int = 1,
) -> dict[str, list[float]]:
    """Each kind in its own phase: CONCURRENCY threads, each sending one request after another.

    ``per_thread`` requests of each kind and thread are spread over ``rounds`` rounds of every
    phase in turn, so that the machine's drift or a background job of the server (a WAL
    checkpoint, the R9 sweep) falls on every kind alike rather than on one phase. With ``cpu``
    and ``server_pid``, also the CPU time per request of each kind, of the server and of this
    process (the signing HTTP clients), into ``cpu[kind]``.
    """
    samples: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[BaseException] = []
    server = psutil.Process(server_pid) if server_pid else None

    def run(t: int, client: Client, kind: str, numbers: range, start: threading.Barrier) -> None:
        mine: dict[str, list[float]] = defaultdict(list)
        try:
            start.wait()
            for j in numbers:
                work.one(client, kind, t + j * len(clients), mine)
        except BaseException as error:
            errors.append(error)
        with lock:
            for k, v in mine.items():
                samples[k].extend(v)

    sent = dict.fromkeys(per_thread, 0)
    used = {kind: [0.0, 0.0] for kind in per_thread}
    for r in range(rounds):
        for kind, total in per_thread.items():
            count = total // rounds + (r < total % rounds)
            if not count:
                continue
            first = sent[kind]
            sent[kind] += count
            start = threading.Barrier(len(clients))
            cpu_before = _cpu_seconds(server)
            threads = [
                threading.Thread(
                    target=run,
                    args=(t, c, kind, range(first, first + count), start),
                    name=f"bench-{t}",
                )
                for t, c in enumerate(clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            cpu_after = _cpu_seconds(server)
            for i in range(2):
                used[kind][i] += cpu_after[i] - cpu_before[i]
    if cpu is not None and server is not None:
        for kind, seconds in used.items():
            requests = len(clients) * sent[kind]
            cpu[kind] = {
                name: round(seconds[i] / requests * 1000, 3)
                for i, name in enumerate(("server_ms", "bench_ms"))
            }
    return samples


def _cpu_seconds(server: psutil.Process | None) -> tuple[float, float]:
    """CPU seconds used so far by the server (all threads) and by this process."""
    own = time.process_time()
    if server is None:
        return 0.0, own
    times = server.cpu_times()
    return times.user + times.system, own


def stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
    }


def start_server(
    db: Database, slack: RemoteSlack, *args: str, port: int | None = None, **env: str
) -> tuple[Child, str]:
    """`examdesk serve` with the floor's `/bench-noop` (bench/_serve.py, ``args`` passed on)
    on ``db`` and the fake Slack API, answering /healthz; returns it and its base URL."""
    port = port or free_port()
    server = Child(
        [sys.executable, "-m", "bench._serve", *args],
        child_env(
            DATABASE_URL=db.url,
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            SLACK_SUPPORT_CHANNEL="C0SUPPORT",
            PORT=str(port),
            **env,
        ),
        "serve",
    )
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not server.alive():
            raise RuntimeError("examdesk serve exited:\n" + server.output())
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60, what="examdesk serve")
    except BaseException:
        server.stop()
        raise
    return server, base_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 candidates, fewer samples")
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--rounds", type=int, help="sequential rounds (default 150, full 400)")
    args = parser.parse_args(argv)

    tests = 10 if args.quick else 50
    rounds = args.rounds or (150 if args.quick else 400)
    per_thread = 25 if args.quick else 60
    all_every = 3

    t0 = time.perf_counter()
    db = create_database(database_url=args.database_url, tests=tests)
    seeded = time.perf_counter() - t0
    with db.engine.connect() as conn:
        test_ids = list(conn.scalars(text("SELECT id FROM tests ORDER BY id")))
    print(
        f"database: {db.engine.dialect.name}, {db.candidates:,} candidates in {tests} tests, "
        f"seeded in {seeded:.1f} s",
        flush=True,
    )
    slack = RemoteSlack()
    clients: list[Client] = []
    server: Child | None = None
    try:
        server, base_url = start_server(db, slack)
        response_url = slack.response_url()
        clients = [Client(base_url, response_url) for _ in range(CONCURRENCY)]
        work = Workload(tests)

        # Warm-up: imports, compiled-statement caches, connection pools, the page cache.
        warm: dict[str, list[float]] = defaultdict(list)
        settled = Settled(slack)
        for i in range(30):
            for kind in (FLOOR, "/candidate", "/exam", "/incident-time", "/reopen"):
                work.one(clients[0], kind, 10_000 + i, warm)
            settled.sent(changes=2, applies=0)
            if i % 5 == 0:
                work.one(clients[0], ALL_APPLY, 10_000 + i, warm)
                settled.sent(changes=0, applies=1)
                raw_update(db.engine, test_ids[i % len(test_ids)])
        concurrent(clients, work, {FLOOR: 5, "/candidate": 5, ALL_APPLY: 1})
        settled.sent(changes=0, applies=CONCURRENCY)
        settled.wait()

        t1 = time.perf_counter()
        seq = sequential(clients[0], work, db.engine, test_ids, rounds, all_every, settled)
        t2 = time.perf_counter()
        per_kind = {k: per_thread for k in (FLOOR, "/candidate", "/exam", "/incident-time")}
        per_kind |= {"/reopen": per_thread, ALL_APPLY: max(3, per_thread // 5)}
        cpu: dict[str, dict[str, float]] = {}
        conc = concurrent(
            clients, work, per_kind, cpu=cpu, server_pid=server.pid, rounds=CONCURRENT_ROUNDS
        )
        t3 = time.perf_counter()
        print(f"sequential {t2 - t1:.1f} s, concurrent {t3 - t2:.1f} s", flush=True)

        # Every confirmation must really have applied: its result went to response_url.
        applied = len(seq[ALL_APPLY]) + len(conc[ALL_APPLY]) + len(warm[ALL_APPLY]) + CONCURRENCY
        wait_for(
            lambda: slack.count("response_url", contains="Incident time for all") >= applied,
            timeout=30,
            what=f"{applied} applied confirmations at response_url",
        )
    finally:
        for client in clients:
            client.close()
        if server is not None:
            server.stop()
        slack.close()
        db.close()

    floor_seq, floor_conc = stats(seq[FLOOR]), stats(conc[FLOOR])
    rows = []
    modes = (("1 at a time", seq, floor_seq), (f"{CONCURRENCY} at a time", conc, floor_conc))
    for label, s, floor in modes:
        for kind in (FLOOR, *AGAINST_FLOOR, ALL_APPLY, RAW_UPDATE):
            if kind not in s:
                continue
            st = stats(s[kind])
            rows.append(
                [
                    label,
                    kind,
                    st["n"],
                    f"{st['p50_ms']:.2f}",
                    f"{st['p99_ms']:.2f}",
                    f"{st['p50_ms'] / floor['p50_ms']:.2f}",
                    f"{st['p99_ms'] / floor['p99_ms']:.2f}",
                ]
            )
    print()
    print(
        table(
            ["mode", "request", "n", "p50 ms", "p99 ms", "p50/floor", "p99/floor"],
            rows,
        )
    )

    print()
    print(f"CPU time per request, {CONCURRENCY} at a time (server: examdesk serve, all threads;")
    print("bench: this process, i.e. the signing HTTP clients; the fake Slack API runs apart)")
    print(
        table(
            ["request", "server ms", "bench ms", "server / floor's"],
            [
                [
                    kind,
                    f"{c['server_ms']:.2f}",
                    f"{c['bench_ms']:.2f}",
                    f"{c['server_ms'] / cpu[FLOOR]['server_ms']:.2f}",
                ]
                for kind, c in cpu.items()
            ],
        )
    )

    # Targets one request at a time only: what a person in front of Slack feels. The
    # CONCURRENCY-at-a-time rows above are information.
    targets: list[Target] = []
    for kind in AGAINST_FLOOR:
        st = stats(seq[kind])
        p50, p99 = st["p50_ms"] / floor_seq["p50_ms"], st["p99_ms"] / floor_seq["p99_ms"]
        targets.append(Target(f"{kind} p50 / floor p50", p50, 1.5))
        targets.append(Target(f"{kind} p99 / floor p99", p99, 2.0))
    all_vs_raw = percentile(seq[ALL_APPLY], 50) / percentile(seq[RAW_UPDATE], 50)
    targets.append(Target("all on 2,000 p50 / raw UPDATE p50", all_vs_raw, 3.0))

    result = {
        "bench": "commands",
        "candidates": db.candidates,
        "database": db.engine.dialect.name,
        "floor_p50_ms": floor_seq["p50_ms"],
        "floor_p99_ms": floor_seq["p99_ms"],
        "commands": {
            k: {"p50_ms": stats(seq[k])["p50_ms"], "p99_ms": stats(seq[k])["p99_ms"]}
            for k in (*AGAINST_FLOOR, ALL_APPLY)
        },
        "raw_update_p50_ms": stats(seq[RAW_UPDATE])["p50_ms"],
        "all_vs_raw_update": round(all_vs_raw, 3),
        "concurrency": CONCURRENCY,
        "concurrent_floor_p50_ms": floor_conc["p50_ms"],
        "concurrent_floor_p99_ms": floor_conc["p99_ms"],
        "concurrent": {
            k: {"p50_ms": stats(conc[k])["p50_ms"], "p99_ms": stats(conc[k])["p99_ms"]}
            for k in (*AGAINST_FLOOR, ALL_APPLY)
        },
        "concurrent_cpu_ms_per_request": cpu,
        "targets_met": sum(t.ok for t in targets),
        "targets": len(targets),
        "machine": machine(),
    }
    return finish(result, targets, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
