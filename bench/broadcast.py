"""A notice to every candidate of a test: fan-out cost, SMS rate, duplicates, losses, memory.

* Fan-out: the notifier's own ``notifications.fanout.fan_out`` (notice, one in-app receipt
  and one SMS delivery per candidate) in one transaction, against the floor: the same rows
  (N receipt-shaped + N delivery-shaped, values prepared beforehand) written by a raw Core
  executemany into scratch tables of the same shape (columns, keys and indexes) in the same
  database, also in one transaction.
* Sending: `examdesk worker` as a subprocess with SMS_PER_SECOND=100 against a fake Twilio on
  loopback that answers each request after 150 ms. Rate = messages at the fake between the
  first and the last; duplicates = (phone, body) received more than once; lost = deliveries
  that never reached the fake; peak RSS of the worker sampled with psutil.

    python -m bench.broadcast --quick     # 2,000 candidates, about 25 s
    python -m bench.broadcast             # 10,000 candidates, about 2 minutes
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from store import clock

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from sqlalchemy import Table, delete, func, insert, select

from bench._support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SUPPORT_USER,
    Child,
    FakeTwilio,
    Target,
    child_env,
    create_database,
    finish,
    machine,
    percentile,
    table,
    test_code,
    wait_for,
)
from notifications.addresses import usable_phone
from notifications.fanout import fan_out, plan
from store.db import make_session_factory
from store.models import Base, Candidate, Delivery, Notice, NoticeReceipt, Test

RATE = 100
TWILIO_DELAY = 0.150
FANOUT_REPEATS = 5


def scratch_tables(engine) -> tuple[Table, Table]:
    """Copies of notice_receipts and deliveries: same columns, keys, foreign keys, indexes."""
    copies = []
    for source in (NoticeReceipt.__table__, Delivery.__table__):
        name = f"bench_{source.name}"
        if name in Base.metadata.tables:
            copies.append(Base.metadata.tables[name])
            continue
        # In the models' metadata, so the foreign keys find notices and candidates.
        copy = source.to_metadata(Base.metadata, name=name)
        for item in (*copy.indexes, *copy.constraints):
            if item.name:
                item.name = f"bench_{item.name}"
        copies.append(copy)
    for copy in copies:
        copy.drop(engine, checkfirst=True)
        copy.create(engine)
    return copies[0], copies[1]


def measure_fanout(db, session_factory, test: Test, repeats: int) -> tuple[list[float], int]:
    """The real fan-out, committed; each notice is deleted afterwards (not timed)."""
    times = []
    reachable = 0
    for i in range(repeats):
        # As /notice does it: the confirmation's preview counts who is reachable (plan), the
        # click fans out. The preview starts cold: no number is known from an earlier run.
        usable_phone.cache_clear()
        with session_factory() as session:
            plan(db_session=session, test=session.get(Test, test.id))
        now = clock.now()
        started = time.perf_counter()
        with session_factory() as session:
            result = fan_out(
                db_session=session,
                test=session.get(Test, test.id),
                text_nb=f"Oppgave 3 er rettet ({i}).",
                text_en=f"Question 3 is corrected ({i}).",
                created_by=SUPPORT_USER,
                now=now,
            )
            session.commit()
        times.append(time.perf_counter() - started)
        reachable = result.reachable
        with db.engine.begin() as conn:
            for table in (Delivery, NoticeReceipt):
                conn.execute(delete(table).where(table.notice_id == result.notice_id))
            conn.execute(delete(Notice).where(Notice.id == result.notice_id))
    return times, reachable


def measure_raw(db, receipts: Table, deliveries: Table, test: Test, repeats: int) -> list[float]:
    with db.engine.connect() as conn:
        candidates = conn.execute(
            select(Candidate.id, Candidate.phone).where(Candidate.test_id == test.id)
        ).all()
        conn.rollback()
    times = []
    for _ in range(repeats):
        now = clock.now()
        with db.engine.begin() as conn:
            notice_id = conn.execute(
                insert(Notice)
                .values(test_id=test.id, created_by=SUPPORT_USER, created_at=now)
                .returning(Notice.id)
            ).scalar_one()
        receipt_rows = [{"notice_id": notice_id, "candidate_id": c.id} for c in candidates]
        delivery_rows = [
            {
                "notice_id": notice_id,
                "candidate_id": c.id,
                "channel": "sms",
                "address": c.phone,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "error_code": None,
                "error_message": None,
                "updated_at": now,
            }
            for c in candidates
        ]
        started = time.perf_counter()
        with db.engine.begin() as conn:
            conn.execute(insert(receipts), receipt_rows)
            conn.execute(insert(deliveries), delivery_rows)
        times.append(time.perf_counter() - started)
        with db.engine.begin() as conn:
            conn.execute(receipts.delete())
            conn.execute(deliveries.delete())
            conn.execute(delete(Notice).where(Notice.id == notice_id))
    return times


def sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    try:
        process = psutil.Process(pid)
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(0.05)
    except psutil.NoSuchProcess:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 candidates")
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    n = 2000 if args.quick else 10_000
    db = create_database(database_url=args.database_url, tests=1, per_test=n)
    session_factory = make_session_factory(db.engine)
    with session_factory() as session:
        test = session.scalar(select(Test).where(Test.code == test_code(0)))
    print(f"database: {db.engine.dialect.name}, {n:,} candidates", flush=True)

    receipts, deliveries = scratch_tables(db.engine)
    # Warm-up of both paths (imports, statement caches), then alternate the measurements.
    measure_fanout(db, session_factory, test, 1)
    measure_raw(db, receipts, deliveries, test, 1)
    fanout_times, raw_times = [], []
    for _ in range(FANOUT_REPEATS):
        fanout_times += measure_fanout(db, session_factory, test, 1)[0]
        raw_times += measure_raw(db, receipts, deliveries, test, 1)
    fanout_p50, raw_p50 = percentile(fanout_times, 50), percentile(raw_times, 50)
    print(f"fan-out p50 {fanout_p50 * 1000:.1f} ms, raw INSERT p50 {raw_p50 * 1000:.1f} ms")

    # The notice that is sent: fanned out, committed, then the worker takes over.
    usable_phone.cache_clear()
    with session_factory() as session:
        notice = fan_out(
            db_session=session,
            test=session.get(Test, test.id),
            text_nb="Oppgave 3 er rettet.",
            text_en="Question 3 is corrected.",
            created_by=SUPPORT_USER,
            now=clock.now(),
        )
        session.commit()
    expected = notice.reachable

    peak = [0]
    stop = threading.Event()
    with FakeTwilio(delay=TWILIO_DELAY) as twilio:
        worker = Child(
            [sys.executable, "-m", "bot.cli", "worker"],
            child_env(
                DATABASE_URL=db.url,
                TWILIO_ACCOUNT_SID=ACCOUNT_SID,
                TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                TWILIO_FROM="+4759440000",
                TWILIO_API_URL=twilio.url,
                SMS_PER_SECOND=str(RATE),
                PUBLIC_URL="https://exams.example.org",
            ),
            "worker",
        )
        sampler = threading.Thread(target=sample_rss, args=(worker.pid, stop, peak), daemon=True)
        sampler.start()
        try:

            def done() -> bool:
                if not worker.alive():
                    raise RuntimeError("examdesk worker exited:\n" + worker.output())
                with db.engine.connect() as conn:
                    left = conn.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.status.in_(("pending", "sending")))
                    )
                    conn.rollback()
                return left == 0

            budget = expected / RATE * 2 + 30
            wait_for(done, timeout=budget, what="every delivery to be sent", every=0.5)
            # Answers still in flight are recorded; give the fake a moment to count them.
            time.sleep(TWILIO_DELAY * 2)
        finally:
            stop.set()
            worker.stop()
        with twilio.lock:
            stamps = [t for t, _, _ in twilio.requests]
            received = Counter((m["to"], m["body"]) for m in twilio.accepted)
    with db.engine.connect() as conn:
        statuses = dict(
            conn.execute(
                select(Delivery.status, func.count())
                .where(Delivery.notice_id == notice.notice_id)
                .group_by(Delivery.status)
            ).all()
        )
        addresses = set(
            conn.scalars(
                select(Delivery.address).where(
                    Delivery.notice_id == notice.notice_id, Delivery.address.is_not(None)
                )
            )
        )
        conn.rollback()
    db.close()

    sent = len(stamps)
    span = max(stamps) - min(stamps) if sent > 1 else float("nan")
    rate = (sent - 1) / span if sent > 1 else 0.0
    duplicates = sum(count - 1 for count in received.values() if count > 1)
    lost = len(addresses - {to for to, _ in received})
    peak_mb = peak[0] / 2**20

    print()
    print(
        table(
            ["measure", "value"],
            [
                ["candidates / SMS deliveries", f"{n:,} / {expected:,}"],
                ["fan-out p50 (real fan_out + commit)", f"{fanout_p50 * 1000:.1f} ms"],
                ["raw INSERT p50 (same rows, Core executemany)", f"{raw_p50 * 1000:.1f} ms"],
                ["SMS requests at the fake Twilio", f"{sent:,} in {span:.1f} s"],
                ["SMS rate", f"{rate:.1f}/s (limit {RATE}/s)"],
                ["delivery statuses", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))],
                ["received twice", duplicates],
                ["never sent", lost],
                ["worker peak RSS", f"{peak_mb:.1f} MB"],
            ],
        )
    )
    targets = [
        Target("in-app fan-out / raw INSERT", fanout_p50 / raw_p50, 2.0),
        Target("SMS rate / limit", rate / RATE, 0.95, at_most=False),
        Target("SMS received twice", duplicates, 0, unit=""),
        Target("deliveries never sent", lost, 0, unit=""),
        Target("worker peak RSS", peak_mb, 200, unit=" MB"),
    ]
    result = {
        "bench": "broadcast",
        "candidates": n,
        "database": db.engine.dialect.name,
        "sms_rate": round(rate, 2),
        "sms_rate_limit": RATE,
        "duplicates": duplicates,
        "lost": lost,
        "inapp_vs_raw_insert": round(fanout_p50 / raw_p50, 3),
        "fanout_p50_ms": round(fanout_p50 * 1000, 2),
        "raw_insert_p50_ms": round(raw_p50 * 1000, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "machine": machine(),
    }
    return finish(result, targets, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
