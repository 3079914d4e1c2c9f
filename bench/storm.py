"""The exam-day storm: every load of exam day at once, against the same server quiet.

* Seeds 10,000 candidates (5 tests × 2,000; ``--quick``: 3 × 1,000) and starts `examdesk
  serve` over HTTP (bench/_serve.py) with the fake Slack API (bench/_fake_slack.py) and the
  fake Twilio (bench/_fake_twilio.py) answering every SMS after 150 ms and then posting
  signed status callbacks to `/twilio/status`: `sent`, then `delivered`; every 10th number
  `undelivered` with an error code, every 100th `delivered` twice, every 20th out of order.
  On PostgreSQL a second `serve` and one `examdesk worker` too; the callbacks and page opens
  go to both serves in turn, as through a load balancer.
* Quiet phase: 2 slash commands a second (bench.commands' mix: `/candidate`, `/exam`,
  `/incident-time`, `/reopen`, signed as Slack signs them) and 5 page opens a second.
* The storm: `/notice` to the first test (confirmed with its button, as staff do) at
  SMS_PER_SECOND=100; 30 % of its candidates open their page in four bursts within two
  minutes (``--quick``: 20 s) and 10 % confirm reading it; the same 2 commands a second; the
  R9 sweep delivers the second test (auto delivery) at its deadline, mid-storm; a registry
  export of every candidate lands in REGISTRY_DIR and the scheduler's refresh (R11) imports
  it.
* Ramp: signed `delivered` callbacks for messages already sent, at rising rates from
  processes of their own, to one serve, while the commands go on: the highest rate with
  none refused, ≥ 0.95× of it answered, and command p99 ≤ 5× quiet is
  `callback_capacity_per_s`.

    python -m bench.storm --quick                       # SQLite, < 2 minutes
    python -m bench.storm --database-url postgresql+psycopg://postgres@127.0.0.1:54320/examdesk_bench

Last line, one JSON object (see bench/README.md).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import itertools
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from bench._fake_slack import RemoteSlack
from bench._support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    Child,
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
from bench.commands import Client, Workload, confirm_token, start_server
from bench.senders import RemoteTwilio
from commands.timing import upload_allowance_minutes
from notifications.sms import DELIVERY_PARAM, STATUS_PATH
from store import clock
from store.models import Candidate, Delivery, Notice, Test

RATE = 100
TWILIO_DELAY = 0.150
PUBLIC_URL = "https://exams.example.org"
COMMANDS_PER_SECOND = 2.0
QUIET_PAGES_PER_SECOND = 5.0
KINDS = ("/candidate", "/exam", "/incident-time", "/reopen")
NOTICE_TEST, R9_TEST = 0, 1
NOTICE_TEXT = "Oppgave 3b: n = 10, ikke n = 100."
FINAL = ("delivered", "undelivered")
BROWSER = {
    "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "sec-fetch-dest": "document",
}


@dataclass(frozen=True)
class Size:
    tests: int
    per_test: int
    quiet_s: float
    window_s: float  # page opens of the notice's candidates
    r9_after_s: float  # the R9 test's deadline, from the notice
    ramp: tuple[int, ...]
    step_s: float


QUICK = Size(3, 1000, 20, 20, 12, (250, 500, 1000), 4)
FULL = Size(5, 2000, 30, 120, 45, (250, 500, 750, 1000, 1250, 1500), 8)


# ---------------------------------------------------------------- load


@dataclass
class Sample:
    at: float  # time.monotonic() when sent
    seconds: float
    kind: str
    ok: bool


class StormWork(Workload):
    """bench.commands' requests, on the tests whose deadlines stay ahead."""

    def __init__(self, codes: list[str], per_test: int) -> None:
        self.codes = codes
        self.per_test = per_test

    def target(self, i: int) -> tuple[str, str]:
        return self.codes[i % len(self.codes)], str(10000 + (i * 7919) % self.per_test)


def commands_loop(client: Client, work: StormWork, stop: threading.Event, into: list[Sample]):
    """COMMANDS_PER_SECOND commands, one after another on one connection, paced from the start
    (a late one is sent at once, never in a burst to catch up)."""
    start = time.monotonic()
    for i in itertools.count():
        due = start + i / COMMANDS_PER_SECOND
        if stop.wait(max(0.0, due - time.monotonic())):
            return
        kind = KINDS[i % len(KINDS)]
        at = time.monotonic()
        try:
            command, text_ = work.request(kind, 50_000 + i)
            seconds, _ = client.command(command, text_)
            into.append(Sample(at, seconds, kind, True))
        except (RuntimeError, httpx.HTTPError) as error:
            into.append(Sample(at, time.monotonic() - at, kind, False))
            print(f"command failed: {error}"[:300], flush=True)
        start = max(start, time.monotonic() - (i + 1) / COMMANDS_PER_SECOND)


class Pages:
    """Candidates' browsers: page opens (GET) and read confirmations (POST …/read) at given
    times, from a few keep-alive connections per serve."""

    def __init__(self, base_urls: list[str], connections: int = 8) -> None:
        self.clients = [
            httpx.Client(base_url=base_urls[i % len(base_urls)], timeout=30, headers=BROWSER)
            for i in range(connections)
        ]
        self.samples: list[Sample] = []
        self._due: list[tuple[float, int, str, str, int | None]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._run, args=(c,), daemon=True) for c in self.clients
        ]
        for thread in self._threads:
            thread.start()

    def plan(self, at: float, kind: str, token: str, notice_id: int | None = None) -> None:
        with self._changed:
            heapq.heappush(self._due, (at, next(self._order), kind, token, notice_id))
            self._changed.notify()

    def idle(self) -> bool:
        with self._changed:
            return not self._due

    def _run(self, client: httpx.Client) -> None:
        while True:
            with self._changed:
                while True:
                    if self._closing:
                        return
                    if self._due and self._due[0][0] <= time.monotonic():
                        _, _, kind, token, notice_id = heapq.heappop(self._due)
                        break
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(wait)
            at = time.monotonic()
            try:
                if kind == "read":
                    response = client.post(f"/notices/{token}/read", data={"notice": notice_id})
                    ok = response.status_code == 303
                else:
                    response = client.get(f"/notices/{token}")
                    ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            self.samples.append(Sample(at, time.monotonic() - at, kind, ok))

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()
        for client in self.clients:
            client.close()


def bursts(start: float, window: float, count: int, rng: random.Random) -> list[float]:
    """``count`` times within ``window``: four bursts (after the SMS, reminders, word of
    mouth), each falling off exponentially."""
    times = []
    for n in range(count):
        burst = start + (n % 4) * window / 4
        times.append(min(burst + rng.expovariate(8 / window), start + window))
    return sorted(times)


# ---------------------------------------------------------------- the ramp


def _ramp_child(
    base_url: str, items: list[tuple[str, dict, str]], rate: float, threads: int, start: float, out
) -> None:
    """Posts ``items`` (query, form, signature) at ``rate`` from ``threads`` connections."""
    answers: list[tuple[int | None, float]] = []
    lock = threading.Lock()

    def run(t: int) -> None:
        mine = []
        with httpx.Client(base_url=base_url, timeout=5) as client:
            for k, (query, form, signature) in enumerate(items[t::threads]):
                due = start + (k * threads + t) / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent = time.monotonic()
                try:
                    status: int | None = client.post(
                        f"{STATUS_PATH}?{query}",
                        data=form,
                        headers={"X-Twilio-Signature": signature},
                    ).status_code
                except httpx.HTTPError:
                    status = None
                mine.append((status, time.monotonic() - sent))
        with lock:
            answers.extend(mine)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((answers, time.monotonic()))


def ramp_items(engine, count: int) -> list[tuple[str, dict, str]]:
    """``count`` messages recorded as sent (Core bulk insert, one per candidate in turn) and
    the signed `delivered` callback for each: every callback is a write."""
    now = clock.now()
    with engine.connect() as conn:
        candidates = conn.execute(select(Candidate.id, Candidate.phone)).all()
    rows = [
        {
            "notice_id": None,
            "candidate_id": candidate.id,
            "channel": "sms",
            "body": "ramp",
            "address": candidate.phone,
            "status": "sent",
            "attempts": 1,
            "next_attempt_at": now,
            "provider_id": "SM" + uuid.uuid4().hex,
            "sent_at": now,
            "updated_at": now,
        }
        for candidate, _ in zip(itertools.cycle(candidates), range(count), strict=False)
    ]
    with engine.begin() as conn:
        ids = conn.execute(insert(Delivery).returning(Delivery.id), rows).scalars().all()
    validator = RequestValidator(AUTH_TOKEN)
    items = []
    for delivery_id, row in zip(ids, rows, strict=True):
        query = f"{DELIVERY_PARAM}={delivery_id}"
        form = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "From": "+4759440000",
            "To": row["address"],
            "MessageSid": row["provider_id"],
            "SmsSid": row["provider_id"],
            "MessageStatus": "delivered",
            "SmsStatus": "delivered",
        }
        url = f"{PUBLIC_URL}{STATUS_PATH}?{query}"
        items.append((query, form, validator.compute_signature(url, form)))
    return items


@dataclass
class Step:
    rate: int
    answered: int = 0
    refused: int = 0
    achieved: float = 0.0
    callback_p99_ms: float = float("nan")
    command_p99_ms: float = float("nan")
    ok: bool = False


def ramp(
    base_url: str,
    items: list,
    size: Size,
    client: Client,
    work: StormWork,
    quiet_p99: float,
    processes: int = 2,
    threads: int = 8,
) -> list[Step]:
    steps = []
    context = multiprocessing.get_context("fork")
    offset = 0
    for rate in size.ramp:
        count = int(rate * size.step_s)
        batch, offset = items[offset : offset + count], offset + count
        out = context.Queue()
        start = time.monotonic() + 0.5
        children = [
            context.Process(
                target=_ramp_child,
                args=(base_url, batch[p::processes], rate / processes, threads, start, out),
            )
            for p in range(processes)
        ]
        for child in children:
            child.start()
        commands: list[Sample] = []
        stop = threading.Event()
        pacer = threading.Thread(
            target=commands_loop, args=(client, work, stop, commands), daemon=True
        )
        time.sleep(max(0.0, start - time.monotonic()))
        pacer.start()
        results = [out.get(timeout=size.step_s * 10 + 60) for _ in children]
        stop.set()
        pacer.join()
        for child in children:
            child.join()
        answers = [a for answered, _ in results for a in answered]
        ended = max(at for _, at in results)
        step = Step(rate)
        step.answered = sum(1 for status, _ in answers if status is not None and status < 300)
        step.refused = len(answers) - step.answered
        step.achieved = len(answers) / (ended - start)
        step.callback_p99_ms = percentile([s for _, s in answers], 99) * 1000
        step.command_p99_ms = percentile([s.seconds for s in commands if s.ok], 99) * 1000
        step.ok = (
            step.refused == 0
            and step.achieved >= 0.95 * rate
            and step.command_p99_ms <= 5 * quiet_p99
            and all(s.ok for s in commands)
        )
        steps.append(step)
        print(
            f"ramp {rate}/s: {step.achieved:.0f}/s answered, {step.refused} refused, callback "
            f"p99 {step.callback_p99_ms:.1f} ms, command p99 {step.command_p99_ms:.1f} ms "
            f"({'ok' if step.ok else 'over'})",
            flush=True,
        )
        if not step.ok:
            break
    return steps


# ---------------------------------------------------------------- watching


@dataclass
class Watch:
    """RSS of each serve, the machine's load, sampled in a thread of its own."""

    pids: dict[str, int]
    peak_rss: dict[str, int] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watch:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        processes = {name: psutil.Process(pid) for name, pid in self.pids.items()}
        while not self.stop.wait(0.1):
            self.load.append(os.getloadavg()[0])
            for name, process in processes.items():
                try:
                    rss = process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_sum(scrapes: list[dict], name: str, **labels: str) -> float:
    return sum(
        value
        for scraped in scrapes
        for (metric, found), value in scraped.items()
        if metric == name and all(dict(found).get(k) == v for k, v in labels.items())
    )


def notice_statuses(engine, notice_id: int) -> Counter:
    with engine.connect() as conn:
        return Counter(
            dict(
                conn.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.notice_id == notice_id)
                    .group_by(Delivery.status)
                ).all()
            )
        )


def write_export(folder: Path, engine, changed_every: int = 50) -> int:
    """The registry's export of every candidate, as R11 drops it: the same fields, with the
    e-mail address of every ``changed_every``-th candidate changed (a refresh that writes).
    Written aside and renamed, so the scheduler never reads half a file."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Test.code,
                Candidate.number,
                Candidate.phone,
                Candidate.email,
                Candidate.language,
                Candidate.extra_minutes,
            ).join(Test, Test.id == Candidate.test_id)
        ).all()
    aside = folder / ".candidates-export.tmp"
    with aside.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["test", "candidate", "phone", "email", "language", "extra_minutes"])
        for n, row in enumerate(rows):
            email = f"new{n}@example.org" if n % changed_every == 0 else row.email
            writer.writerow(
                [row.code, row.number, row.phone, email, row.language, row.extra_minutes]
            )
    aside.rename(folder / "candidates-storm.csv")
    return len(rows)


# ---------------------------------------------------------------- the run


def stop_children(children: list[Child], logs: Path | None) -> None:
    """Stop every child not stopped yet, its log kept in ``logs`` (if given)."""
    for child in children:
        if child.stopped:
            continue
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            (logs / f"{child.name}-{child.pid}.log").write_text(child.output())
        child.stop()


def write_samples(path: Path, samples: list[Sample], since: float) -> None:
    """Every request's time, for finding out what a slow one met (``--logs``)."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["at_s", "ms", "kind", "ok"])
        for s in sorted(samples, key=lambda s: s.at):
            writer.writerow([f"{s.at - since:.3f}", f"{s.seconds * 1000:.1f}", s.kind, s.ok])


def p99_ms(samples: list[Sample], since: float, until: float, kinds: tuple[str, ...]) -> float:
    return (
        percentile(
            [s.seconds for s in samples if since <= s.at < until and s.ok and s.kind in kinds], 99
        )
        * 1000
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 candidates, < 2 minutes")
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--no-ramp", action="store_true", help="skip the callback ramp")
    parser.add_argument("--logs", type=Path, help="keep every process's log in this folder")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    rng = random.Random(21)
    load_at_start = os.getloadavg()

    db = create_database(database_url=args.database_url, tests=size.tests, per_test=size.per_test)
    engine = db.engine
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        r9_id = conn.scalar(select(Test.id).where(Test.code == test_code(R9_TEST)))
        conn.execute(update(Test).where(Test.id == r9_id).values(auto_deliver=True))
        conn.execute(update(Candidate).where(Candidate.test_id == r9_id).values(extra_minutes=0))
        tokens = {
            code: list(
                conn.scalars(
                    select(Candidate.notice_token)
                    .join(Test, Test.id == Candidate.test_id)
                    .where(Test.code == code)
                    .order_by(Candidate.number)
                )
            )
            for code in (test_code(i) for i in range(size.tests))
        }
    print(f"database: {engine.dialect.name}, {db.candidates:,} candidates", flush=True)

    registry = Path(tempfile.mkdtemp(prefix="examdesk-registry-"))
    slack = RemoteSlack()
    serves: list[tuple[Child, str]] = []
    workers: list[Child] = []
    twilio: RemoteTwilio | None = None
    clients: list[Client] = []
    pages: Pages | None = None
    watch: Watch | None = None
    received: dict = {}
    stop = threading.Event()  # the commands' pacer
    try:
        serve_ports = [free_port() for _ in range(2 if postgres else 1)]
        twilio = RemoteTwilio(
            TWILIO_DELAY, callbacks=",".join(f"http://127.0.0.1:{p}" for p in serve_ports)
        )
        env = dict(
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_FROM="+4759440000",
            TWILIO_API_URL=twilio.url,
            SMS_PER_SECOND=str(RATE),
            PUBLIC_URL=PUBLIC_URL,
            REGISTRY_DIR=str(registry),
            BENCH_REGISTRY_MINUTES="0.25",
        )
        for port in serve_ports:
            serves.append(start_server(db, slack, port=port, **env))
        if postgres:
            workers.append(
                Child(
                    [sys.executable, "-m", "bot.runtime.cli", "worker"],
                    child_env(
                        DATABASE_URL=db.url,
                        SLACK_BOT_TOKEN="xoxb-bench",
                        SLACK_API_URL=slack.api_url,
                        **env,
                    ),
                    "worker",
                )
            )
        base_urls = [url for _, url in serves]
        watch = Watch({f"serve-{c.pid}": c.pid for c, _ in serves}).start()
        response_url = slack.response_url()
        clients = [Client(base_urls[0], response_url) for _ in range(3)]
        commander, noticer, ramper = clients
        codes = [test_code(i) for i in range(size.tests) if i != R9_TEST]
        work = StormWork(codes, size.per_test)
        pages = Pages(base_urls)
        quiet_tokens = [t for code in codes[1:] for t in tokens[code]] or tokens[codes[0]]

        # Warm-up: imports, statement caches, pools.
        for i in range(12):
            command, text_ = work.request(KINDS[i % len(KINDS)], 90_000 + i)
            commander.command(command, text_)
        for token in quiet_tokens[:20]:
            pages.plan(0, "open", token)
        wait_for(pages.idle, timeout=60, what="the warm-up pages")
        time.sleep(1)

        samples: list[Sample] = []
        pacer = threading.Thread(
            target=commands_loop, args=(commander, work, stop, samples), daemon=True
        )
        # The R9 test's deadline: at least one sweep (every 30 s) plans it before it falls due.
        quiet_start = time.monotonic()
        print(f"quiet phase from {time.strftime('%H:%M:%S')}", flush=True)
        deadline_in = size.quiet_s + size.r9_after_s
        deadline = clock.now() + timedelta(seconds=deadline_in)
        with Session(engine) as session, session.begin():
            r9 = session.get(Test, r9_id)
            # R1: the deadline is the end plus the upload allowance.
            r9.end = deadline - timedelta(minutes=upload_allowance_minutes(r9))
        r9_due = quiet_start + deadline_in
        pacer.start()
        for n in range(int(size.quiet_s * QUIET_PAGES_PER_SECOND)):
            at = quiet_start + n / QUIET_PAGES_PER_SECOND
            pages.plan(at, "open", quiet_tokens[(n * 37) % len(quiet_tokens)])
        time.sleep(max(0.0, quiet_start + size.quiet_s - time.monotonic()))
        storm_start = time.monotonic()
        print(f"quiet phase {storm_start - quiet_start:.1f} s; the storm begins", flush=True)

        exported = write_export(registry, engine)
        _, preview = noticer.command("/notice", f"{test_code(NOTICE_TEST)} {NOTICE_TEXT}")
        noticer.confirm(confirm_token(preview))
        with engine.connect() as conn:
            notice_id = conn.scalar(select(func.max(Notice.id)))
        committed = time.monotonic()
        notice_tokens = list(tokens[test_code(NOTICE_TEST)])
        rng.shuffle(notice_tokens)
        openers = notice_tokens[: int(len(notice_tokens) * 0.30)]
        for at, token in zip(
            bursts(committed, size.window_s, len(openers), rng), openers, strict=True
        ):
            pages.plan(at, "open", token)
        for token in openers[: int(len(notice_tokens) * 0.10)]:
            # A while after the open: reading takes time.
            pages.plan(committed + rng.uniform(2, size.window_s), "read", token, notice_id)

        expected = size.per_test
        r9_done_at = registry_done_at = float("nan")
        storm_deadline = committed + max(size.window_s, expected / RATE) + 180

        def refreshed() -> bool:
            """The scheduler has logged the import of the export (R11)."""
            return any(
                "registry refresh: " in line and "candidates-storm.csv" in line
                for child, _ in serves
                for line in child.output().splitlines()
            )

        while True:
            now = time.monotonic()
            counts = notice_statuses(engine, notice_id)
            if r9_done_at != r9_done_at:
                with engine.connect() as conn:
                    delivered = conn.scalar(
                        select(func.count()).where(
                            Candidate.test_id == r9_id, Candidate.status == "submitted"
                        )
                    )
                if delivered == size.per_test:
                    r9_done_at = now
            if registry_done_at != registry_done_at and refreshed():
                registry_done_at = now
                # Imported: the next refresh (every 15 s here) need not read it again.
                (registry / "candidates-storm.csv").unlink()
            done = (
                sum(counts[s] for s in FINAL) >= expected
                and now >= committed + size.window_s
                and pages.idle()
                and r9_done_at == r9_done_at
                and registry_done_at == registry_done_at
            )
            if done:
                break
            if now > storm_deadline:
                print(
                    f"the storm did not settle: notice {dict(counts)}, R9 done "
                    f"{r9_done_at == r9_done_at}, registry done "
                    f"{registry_done_at == registry_done_at}",
                    flush=True,
                )
                break
            time.sleep(0.5)
        storm_end = time.monotonic()
        stop.set()
        pacer.join()
        time.sleep(2.5)  # the last repeated callbacks (1.5 s after their SMS)
        storm_load = list(watch.load)
        print(f"storm {storm_end - storm_start:.1f} s", flush=True)

        quiet_cmd = p99_ms(samples, quiet_start, storm_start, KINDS)
        steps: list[Step] = []
        if not args.no_ramp:
            items = ramp_items(engine, int(sum(size.ramp) * size.step_s))
            steps = ramp(base_urls[0], items, size, ramper, work, quiet_cmd)
        scrapes = [scrape(url) for url in base_urls]
        final = notice_statuses(engine, notice_id)
        with engine.connect() as conn:
            r9_statuses = dict(
                conn.execute(
                    select(Candidate.status, func.count())
                    .where(Candidate.test_id == r9_id)
                    .group_by(Candidate.status)
                ).all()
            )
            addresses = set(
                conn.scalars(
                    select(Delivery.address).where(
                        Delivery.notice_id == notice_id, Delivery.address.is_not(None)
                    )
                )
            )
        # Each callback's verdict compares it with its row, so nothing may answer a callback
        # or write a row once the rows are read. The senders go on meanwhile: the commands'
        # messages to candidates fall due up to a minute after a change, and read while one
        # was out, its `delivered` answered 204 after the read showed as lost (row `sent`),
        # its `sent` as one for a SID no row held. So the fake Twilio stops first (callbacks
        # it is posting get their answers, those not yet due are not posted: none is answered
        # by a serve on its way out), then every serve and worker, and then the rows are read.
        received = twilio.received()
        twilio = None
        stop_children([*workers, *(c for c, _ in serves)], args.logs)
        with engine.connect() as conn:
            # Every SMS's: the notice's, and the messages commands send candidates after a
            # change (commands.tell_candidates).
            rows = conn.execute(
                select(Delivery.provider_id, Delivery.status, Delivery.error_code).where(
                    Delivery.provider_id.is_not(None)
                )
            ).all()
        db_status = {sid: status for sid, status, _ in rows}
        db_codes = {sid: code for sid, _, code in rows}
    finally:
        stop.set()
        if pages is not None:
            pages.close()
        for client in clients:
            client.close()
        if watch is not None:
            watch.close()
        stop_children([*workers, *(c for c, _ in serves)], args.logs)
        if twilio is not None:
            twilio.received()
        slack.close()
        db.close()
        for leftover in registry.iterdir():
            leftover.unlink()
        registry.rmdir()

    # SMS: rate at the fake, twice, never.
    # The notice's SMS by their link; commands' messages to candidates come and go meanwhile.
    times = sorted(
        at
        for (at, _), body in zip(received["requests"], received["request_bodies"], strict=True)
        if f"#n{notice_id}" in body
    )
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    copies = Counter((to, body) for to, body in received["accepted"] if f"#n{notice_id}" in body)
    duplicates = sum(count - 1 for count in copies.values() if count > 1)
    lost = len(addresses - {to for to, _ in copies})
    # Commands' messages to candidates too: the same text to the same number twice.
    every = Counter(map(tuple, received["accepted"]))
    duplicates_all = sum(count - 1 for count in every.values() if count > 1)
    # Callbacks: refused = not answered 2xx; lost = answered 2xx, but its status is not the
    # row's (a final status replaces `sent`, so `sent` is kept by a later final one).
    refused = lost_callbacks = 0
    lost_kinds: Counter = Counter()
    for sid, _, status, code, answer in received["reported"]:
        if answer is None or not 200 <= answer < 300:
            refused += 1
            continue
        held = db_status.get(sid)
        kept = held == status or (status == "sent" and held in FINAL)
        if not kept or (status == "undelivered" and db_codes.get(sid) != str(code)):
            lost_callbacks += 1
            lost_kinds[f"{status} → row {held}"] += 1
    if args.logs:
        write_samples(args.logs / "samples.csv", samples + pages.samples, quiet_start)
    quiet_page = p99_ms(pages.samples, quiet_start, storm_start, ("open",))
    storm_cmd = p99_ms(samples, storm_start, storm_end, KINDS)
    storm_page = p99_ms(pages.samples, storm_start, storm_end, ("open",))
    failed = Counter(s.kind for s in samples + pages.samples if not s.ok)
    peak_mb = max(watch.peak_rss.values()) / 2**20
    capacity = max((s.rate for s in steps if s.ok), default=0)
    server_callbacks = {
        dict(labels)["status"]: int(value)
        for scraped in scrapes
        for (name, labels), value in scraped.items()
        if name == "examdesk_http_requests_total" and dict(labels)["route"] == STATUS_PATH
    }
    sms_counted = metric_sum(scrapes, "examdesk_messages_sent_total", channel="sms", outcome="sent")
    slots_missed = {
        where: int(metric_sum(scrapes, "examdesk_sms_slots_missed_total", where=where))
        for where in ("hand-over", "wire")
    }
    r9_late = r9_done_at - r9_due

    print()
    rows = [
        [
            "database / serves",
            f"{engine.dialect.name} / {len(serves)} serve"
            + (f" + {len(workers)} worker" if workers else ""),
        ],
        ["candidates", f"{db.candidates:,} in {size.tests} tests"],
        [
            "command p99 quiet / storm",
            f"{quiet_cmd:.1f} / {storm_cmd:.1f} ms "
            f"(n {sum(1 for s in samples if s.at < storm_start)} / "
            f"{sum(1 for s in samples if storm_start <= s.at < storm_end)})",
        ],
        [
            "page p99 quiet / storm",
            f"{quiet_page:.1f} / {storm_page:.1f} ms "
            f"(n {sum(1 for s in pages.samples if s.at < storm_start and s.kind == 'open')} / "
            f"{sum(1 for s in pages.samples if s.at >= storm_start and s.kind == 'open')})",
        ],
        ["read confirmations", sum(1 for s in pages.samples if s.kind == "read")],
        ["requests failed", dict(failed) or 0],
        [
            "notice: SMS / statuses",
            f"{expected:,} / " + ", ".join(f"{k} {v}" for k, v in sorted(final.items())),
        ],
        ["SMS rate at the fake", f"{rate:.2f}/s (limit {RATE}/s), {len(times):,} requests"],
        ["SMS sent (GET /metrics; the worker's not scraped)", int(sms_counted)],
        ["SMS slots missed (GET /metrics): at hand-over / at the wire", slots_missed],
        ["the same SMS twice: the notice's / any", f"{duplicates} / {duplicates_all}"],
        [
            "callbacks posted / refused / lost",
            f"{len(received['reported']):,} / {refused} / {lost_callbacks}",
        ],
        ["/twilio/status answers (GET /metrics, ramp included)", server_callbacks],
        ["lost callbacks: their status → the row's", dict(lost_kinds) or "–"],
        [f"R9: test of {size.per_test:,} delivered, after its deadline", f"{r9_late:.1f} s"],
        ["R9 test's candidates by status", r9_statuses],
        [
            f"registry refresh of {exported:,} imported, after the export landed",
            f"{registry_done_at - storm_start:.1f} s",
        ],
        ["peak RSS per serve", ", ".join(f"{v / 2**20:.0f} MB" for v in watch.peak_rss.values())],
        [
            "load average: start / storm min–max",
            f"{load_at_start[0]:.1f} / {min(storm_load):.1f}–{max(storm_load):.1f}",
        ],
    ]
    print(table(["measure", "value"], rows))
    if steps:
        print()
        print(
            table(
                [
                    "ramp callbacks/s",
                    "answered/s",
                    "refused",
                    "callback p99 ms",
                    "command p99 ms",
                    "ok",
                ],
                [
                    [
                        s.rate,
                        f"{s.achieved:.0f}",
                        s.refused,
                        f"{s.callback_p99_ms:.1f}",
                        f"{s.command_p99_ms:.1f}",
                        "yes" if s.ok else "no",
                    ]
                    for s in steps
                ],
            )
        )
    targets = [
        Target("command p99 storm / quiet", storm_cmd / quiet_cmd, 2.0),
        Target("page p99 storm / quiet", storm_page / quiet_page, 3.0),
        Target("SMS rate / limit", rate / RATE, 0.95, at_most=False),
        Target("callbacks refused", refused, 0, unit=""),
        Target("callbacks lost", lost_callbacks, 0, unit=""),
        Target("SMS sent twice", duplicates, 0, unit=""),
        Target("SMS never sent", lost, 0, unit=""),
        Target("requests failed", sum(failed.values()), 0, unit=""),
        Target("R9 delivered after its deadline", r9_late, 30, unit=" s"),
        Target("peak RSS of a serve", peak_mb, 300, unit=" MB"),
    ]
    if steps:
        targets.append(Target("callback capacity", capacity, 1000, unit="/s", at_most=False))
    result = {
        "bench": "storm",
        "database": engine.dialect.name,
        "candidates": db.candidates,
        "command_p99_storm_vs_quiet": round(storm_cmd / quiet_cmd, 2),
        "page_p99_storm_vs_quiet": round(storm_page / quiet_page, 2),
        "sms_rate": round(rate, 2),
        "sms_rate_limit": RATE,
        "sms_slots_missed": slots_missed,
        "callbacks_refused": refused,
        "callbacks_lost": lost_callbacks,
        "duplicates": duplicates,
        "duplicates_any_sms": duplicates_all,
        "lost": lost,
        "peak_rss_mb": round(peak_mb, 1),
        "callback_capacity_per_s": capacity if steps else None,
        "command_p99_ms": {"quiet": round(quiet_cmd, 1), "storm": round(storm_cmd, 1)},
        "page_p99_ms": {"quiet": round(quiet_page, 1), "storm": round(storm_page, 1)},
        "r9_late_s": round(r9_late, 1),
        "ramp": [
            {
                "rate": s.rate,
                "answered_per_s": round(s.achieved),
                "refused": s.refused,
                "command_p99_ms": round(s.command_p99_ms, 1),
            }
            for s in steps
        ],
        "load_average": [round(min(storm_load), 1), round(max(storm_load), 1)],
        "machine": machine(),
    }
    print(f"machine: {json.dumps(machine())}")
    return finish(result, targets, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
