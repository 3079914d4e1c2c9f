"""Several senders on one PostgreSQL database: one deployment-wide SMS rate, even shares,
nothing sent twice or lost, also when a sender and the scheduler's leader are killed.

* ``--serve N`` × `examdesk serve` and ``--workers M`` × `examdesk worker` (default 2 + 2) as
  subprocesses, SMS_PER_SECOND=50 for all of them together, against the fake Twilio of
  tests/fake_twilio.py in a process of its own (bench/_fake_twilio.py), answering each
  request after 150 ms.
* A notice to 8,000 candidates (``--quick``: 2,000): the notifier's own ``fan_out``, committed
  once every sender is live; the database's statistics were gathered before any delivery
  existed, as on exam day.
* ``--kill``: once half the SMS are out, kill -9 one worker and the serve that leads.
* Measured at the fake, each request at the time the kernel stamped on its first bytes (when
  its sender sent it): the rate between the first and the last SMS, the busiest one-second
  window, the time from the notice's commit to the first SMS, each surviving sender's share
  (its own log's "SMS to … accepted" lines) against the mean, (phone, body) received twice,
  deliveries never received, and after the kill the longest time without any SMS. The
  sends the killed senders had marked but maybe not made are settled by reconciliation
  (NOTIFIER_RECONCILE_AFTER=5 here: the fake lists a message at once); those resent after
  all the others are counted, and left out of the rate and the stall.

    python -m bench.senders --quick --kill \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/examdesk_bench
    python -m bench.senders --kill --database-url …     # 8,000 candidates
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import func, select, text

from bench._support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SUPPORT_USER,
    Child,
    Target,
    child_env,
    create_database,
    finish,
    free_port,
    machine,
    table,
    test_code,
    wait_for,
)
from notifications.addresses import usable_phone
from notifications.dispatch import LEASE_PREFIX
from notifications.fanout import fan_out
from store import clock
from store.db import make_session_factory
from store.models import Delivery, Lease, Test

RATE = 50
TWILIO_DELAY = 0.150
ACCEPTED = " accepted: SM"  # notifications/sms.py logs one such line per SMS Twilio took


@dataclass
class Sender:
    kind: str  # serve | worker
    child: Child
    port: int | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.child.pid}"

    def accepted(self) -> int:
        return self.child.output().count(ACCEPTED)


class RemoteTwilio:
    """bench/_fake_twilio.py in a process of its own; with ``callbacks`` (serves' base URLs,
    comma-separated) it posts status callbacks there."""

    def __init__(self, delay: float, callbacks: str | None = None) -> None:
        self.out = Path(tempfile.mkstemp(prefix="examdesk-fake-twilio-", suffix=".json")[1])
        self.child = Child(
            [sys.executable, "-m", "bench._fake_twilio", str(delay), str(self.out)]
            + ([callbacks] if callbacks else []),
            child_env(),
            "fake-twilio",
        )
        wait_for(lambda: self.child.output().startswith("http"), timeout=30, what="fake Twilio")
        self.url = self.child.output().split()[0]

    def received(self) -> dict:
        self.child.stop()
        try:
            return json.loads(self.out.read_text())
        finally:
            self.out.unlink()


def leader_pid(engine) -> int | None:
    """The pid of the serve holding the scheduler's advisory lock (`host:pid:nonce`)."""
    with engine.connect() as conn:
        name = conn.scalar(
            text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND a.datname = current_database()"
            )
        )
    return int(name.split(":")[1]) if name else None


def live_senders(engine) -> set[int]:
    with engine.connect() as conn:
        holders = conn.scalars(
            select(Lease.holder).where(
                Lease.name.like(LEASE_PREFIX + "%"), Lease.expires_at >= clock.now()
            )
        ).all()
    return {int(holder.split(":")[1]) for holder in holders}


def statuses(engine, notice_id: int) -> Counter:
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


def busiest_second(times: list[float]) -> int:
    """The most requests in any one-second window [t, t + 1)."""
    busiest, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def longest_gap(times: list[float], since: float) -> float:
    after = [since, *(t for t in times if t > since)]
    return max((b - a for a, b in itertools.pairwise(after)), default=float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL URL (recreated)")
    parser.add_argument("--quick", action="store_true", help="2,000 candidates")
    parser.add_argument("--serve", type=int, default=2, help="examdesk serve processes")
    parser.add_argument("--workers", type=int, default=2, help="examdesk worker processes")
    parser.add_argument("--rate", type=float, default=RATE, help="SMS_PER_SECOND")
    parser.add_argument(
        "--kill", action="store_true", help="kill -9 one worker and the leader mid-way"
    )
    parser.add_argument("--logs", type=Path, help="keep each sender's log in this folder")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgresql"):
        parser.error("several senders need PostgreSQL: --database-url postgresql+psycopg://…")
    if args.kill and (args.serve < 2 or args.workers < 1):
        parser.error("--kill needs at least 2 --serve (one takes over) and 1 --workers")

    n = 2000 if args.quick else 8000
    db = create_database(database_url=args.database_url, tests=1, per_test=n)
    engine = db.engine
    session_factory = make_session_factory(engine)
    print(f"database: {engine.dialect.name}, {n:,} candidates", flush=True)

    twilio = RemoteTwilio(TWILIO_DELAY)
    env = dict(
        DATABASE_URL=db.url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM="+4759440000",
        TWILIO_API_URL=twilio.url,
        SMS_PER_SECOND=f"{args.rate:g}",
        PUBLIC_URL="https://exams.example.org",
        NOTIFIER_RECONCILE_AFTER="5",
    )
    senders: list[Sender] = []
    try:
        for _ in range(args.serve):
            port = free_port()
            command = [sys.executable, "-m", "bot.runtime.cli", "serve"]
            senders.append(
                Sender("serve", Child(command, child_env(**env, PORT=str(port)), "serve"), port)
            )
        for _ in range(args.workers):
            command = [sys.executable, "-m", "bot.runtime.cli", "worker"]
            senders.append(Sender("worker", Child(command, child_env(**env), "worker")))

        def ready() -> bool:
            for sender in senders:
                if not sender.child.alive():
                    raise RuntimeError(f"{sender.name} exited:\n{sender.child.output()}")
            for sender in senders:
                if sender.port is not None:
                    try:
                        httpx.get(f"http://127.0.0.1:{sender.port}/healthz", timeout=1)
                    except httpx.HTTPError:
                        return False
            pids = {sender.child.pid for sender in senders}
            return live_senders(engine) >= pids and leader_pid(engine) in pids

        wait_for(ready, timeout=120, what="every sender live and a leader", every=0.2)
        time.sleep(1.5)  # every sender has seen the others' liveness rows
        by_pid = {sender.child.pid: sender for sender in senders}

        usable_phone.cache_clear()
        with session_factory() as session:
            test = session.scalar(select(Test).where(Test.code == test_code(0)))
            notice = fan_out(
                db_session=session,
                test=test,
                text_nb="Oppgave 3 er rettet.",
                text_en="Question 3 is corrected.",
                created_by=SUPPORT_USER,
                now=clock.now(),
            )
            session.commit()
        committed = time.monotonic()
        expected = notice.reachable
        print(f"notice {notice.notice_id}: {expected:,} SMS", flush=True)

        killed: list[Sender] = []
        killed_at = float("nan")
        in_flight: set[str] = set()
        takeover = float("nan")
        deadline = committed + expected / args.rate * 2 + 120
        while True:
            counts = statuses(engine, notice.notice_id)
            if not (counts["pending"] or counts["sending"] or counts["unknown"]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up waiting for the notice to be sent: {dict(counts)}")
            if args.kill and not killed and counts["sent"] >= expected // 2:
                leader = by_pid[leader_pid(engine)]
                worker = next(s for s in senders if s.kind == "worker")
                for sender in (worker, leader):
                    os.kill(sender.child.pid, signal.SIGKILL)
                    sender.child.process.wait()
                killed_at = time.monotonic()
                killed = [worker, leader]
                # What they had marked 'sending': made or not, reconciliation settles it.
                with engine.connect() as conn:
                    in_flight = set(
                        conn.scalars(
                            select(Delivery.address).where(
                                Delivery.notice_id == notice.notice_id,
                                Delivery.status == "sending",
                                Delivery.claimed_by.like(f"%:{worker.child.pid}:%")
                                | Delivery.claimed_by.like(f"%:{leader.child.pid}:%"),
                            )
                        )
                    )
                print(
                    f"killed {worker.name} and the leader {leader.name} at "
                    f"{killed_at - committed:.1f} s; {len(in_flight)} of their sends in flight",
                    flush=True,
                )
            if killed and takeover != takeover:
                new = leader_pid(engine)
                if new is not None and new != killed[1].child.pid:
                    takeover = time.monotonic() - killed_at
            time.sleep(0.2)
        time.sleep(TWILIO_DELAY * 2)
        shares = {sender.name: sender.accepted() for sender in senders}
    finally:
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
        for sender in senders:
            if args.logs is not None:
                (args.logs / f"{sender.name}.log").write_text(sender.child.output())
            sender.child.stop()
        received = twilio.received()
        if args.logs is not None:
            (args.logs / "fake-twilio.json").write_text(json.dumps(received))

    with engine.connect() as conn:
        final = statuses(engine, notice.notice_id)
        addresses = set(
            conn.scalars(
                select(Delivery.address).where(
                    Delivery.notice_id == notice.notice_id, Delivery.address.is_not(None)
                )
            )
        )
    db.close()

    requests = sorted(received["requests"])
    times = [at for at, _ in requests]
    # Until the last SMS that is not a killed sender's resend: that is the notice being sent.
    last_regular = max(at for at, to in requests if to not in in_flight)
    regular = [at for at in times if at <= last_regular]
    copies = Counter(map(tuple, received["accepted"]))
    duplicates = sum(count - 1 for count in copies.values() if count > 1)
    lost = len(addresses - {to for to, _ in copies})
    span = regular[-1] - regular[0] if len(regular) > 1 else float("nan")
    rate = (len(regular) - 1) / span if len(regular) > 1 else 0.0
    busiest = busiest_second(times)
    first_sms = times[0] - committed if times else float("nan")
    stall = longest_gap(regular, killed_at) if killed else float("nan")
    survivors = {s.name: shares[s.name] for s in senders if s not in killed}
    mean = sum(survivors.values()) / len(survivors)
    share_min_max = [
        round(min(survivors.values()) / mean, 3),
        round(max(survivors.values()) / mean, 3),
    ]
    resent = sum(1 for _, to in requests if to in in_flight)
    resent_later = len(times) - len(regular)

    print()
    rows = [
        ["senders", f"{args.serve} serve + {args.workers} worker"],
        ["candidates", f"{n:,}"],
        [
            "SMS deliveries / statuses",
            f"{expected:,} / " + ", ".join(f"{k} {v}" for k, v in sorted(final.items())),
        ],
        ["requests at the fake Twilio", f"{len(times):,} in {times[-1] - times[0]:.1f} s"],
        ["of them timed by the kernel", f"{len(times) - received['unstamped']:,}"],
        ["SMS rate (first to last)", f"{rate:.2f}/s (limit {args.rate:g}/s)"],
        ["busiest one-second window", busiest],
        ["first SMS after the commit", f"{first_sms:.2f} s"],
        *[
            [f"sent by {name}", f"{count:,}" + (" (killed)" if name not in survivors else "")]
            for name, count in shares.items()
        ],
        ["survivors' shares / mean", f"{share_min_max[0]:.2f} – {share_min_max[1]:.2f}"],
        ["received twice", duplicates],
        ["never received", lost],
    ]
    if killed:
        rows += [
            ["longest time without SMS after the kill", f"{stall:.2f} s"],
            ["scheduler taken over after", f"{takeover:.1f} s"],
            [
                "killed senders' sends in flight / requests for them / of those after the rest",
                f"{len(in_flight)} / {resent} / {resent_later}",
            ],
        ]
    print(table(["measure", "value"], rows))
    targets = [
        Target("busiest second / limit", busiest / args.rate, 1.0),
        Target("SMS rate / limit", rate / args.rate, 0.95, at_most=False),
        Target("first SMS", first_sms, 2.0, unit=" s"),
        Target("smallest share / mean", share_min_max[0], 0.75, at_most=False),
        Target("largest share / mean", share_min_max[1], 1.25),
        Target("SMS received twice", duplicates, 0, unit=""),
        Target("deliveries never received", lost, 0, unit=""),
    ]
    if killed:
        targets.append(Target("longest stall after the kill", stall, 10.0, unit=" s"))
    result = {
        "bench": "senders",
        "senders": args.serve + args.workers,
        "sms_rate": round(rate, 2),
        "sms_rate_limit": args.rate,
        "busiest_second": busiest,
        "first_sms_s": round(first_sms, 2),
        "share_min_max": share_min_max,
        "duplicates": duplicates,
        "lost": lost,
        "stall_after_kill_s": round(stall, 2) if killed else None,
    }
    print(f"machine: {json.dumps(machine())}")
    return finish(result, targets, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
