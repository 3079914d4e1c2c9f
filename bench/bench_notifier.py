"""Notifier benchmark: fan-out vs a raw bulk INSERT, and dispatch rate and memory.

    python bench/bench_notifier.py [--candidates 10000] [--rate 100] [--latency 0.15]

Targets: in-app fan-out ≤ 2× a raw bulk INSERT of the same rows; dispatch ≥ 0.95× the
rate with a fake Twilio answering after 150 ms; peak RSS ≤ 200 MB.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from sqlalchemy import delete, func, insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_twilio import phone, twilio_settings  # noqa: E402

from notifications.dispatch import Tuning, start_dispatcher  # noqa: E402
from notifications.fanout import fan_out  # noqa: E402
from store import migrate  # noqa: E402
from store.db import make_engine, make_session_factory  # noqa: E402
from store.models import Candidate, Delivery, Notice, NoticeReceipt, Test  # noqa: E402

FAKE = f"""
import sys, time
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
from fake_twilio import FakeTwilio
with FakeTwilio(delay=float(sys.argv[1])) as fake:
    print(fake.url, flush=True)
    time.sleep(3600)
"""


def _sent(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).where(Delivery.status == "sent"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    engine = make_engine(url)
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    with factory.begin() as s:
        test = Test(
            code="BENCH-1",
            title="",
            kind="school",
            start=now - timedelta(hours=1),
            end=now + timedelta(hours=3),
            updated_at=now,
        )
        s.add(test)
        s.flush()
        test_id = test.id
        s.execute(
            insert(Candidate),
            [
                {
                    "test_id": test_id,
                    "number": str(10000 + n),
                    "phone": phone(n),
                    "language": "nb",
                    "notice_token": secrets.token_urlsafe(32),
                }
                for n in range(1, args.candidates + 1)
            ],
        )

    # Raw bulk INSERT of the same receipt rows, as the yardstick.
    with factory.begin() as s:
        notice_id = s.execute(
            insert(Notice)
            .values(test_id=test_id, created_by="bench", created_at=now)
            .returning(Notice.id)
        ).scalar()
        ids = s.scalars(select(Candidate.id).where(Candidate.test_id == test_id)).all()
        started = time.perf_counter()
        s.execute(insert(NoticeReceipt), [{"notice_id": notice_id, "candidate_id": i} for i in ids])
        raw = time.perf_counter() - started
        s.rollback()
    with factory.begin() as s:
        test = s.get(Test, test_id)
        started = time.perf_counter()
        result = fan_out(
            db_session=s,
            test=test,
            text_nb="Bench",
            text_en="",
            created_by="bench",
            now=datetime.now(UTC),
        )
        whole = time.perf_counter() - started
    with factory() as s:
        inapp = s.scalar(select(func.count()).select_from(NoticeReceipt))
    print(
        f"fan-out of {result.candidates}: whole (notice+receipts+deliveries) {whole:.3f} s; "
        f"raw INSERT of {inapp} receipts {raw:.3f} s"
    )

    process = psutil.Process()
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], process.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    # The fake runs in a process of its own, as Twilio would: in this process its threads
    # would compete with the dispatcher's for the GIL and measure that instead.
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE, str(args.latency)], stdout=subprocess.PIPE, text=True
    )
    fake_url = fake.stdout.readline().strip()
    settings = twilio_settings(fake_url, sms_per_second=args.rate)
    started = time.perf_counter()
    stop = start_dispatcher(settings, factory, tuning=Tuning())
    while _sent(factory) < args.candidates:
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    stop()
    fake.terminate()
    done.set()
    with factory() as s:
        times = sorted(t.timestamp() for t in s.scalars(select(Delivery.sent_at)))
    busiest = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    with factory() as s:
        sent = s.scalar(select(func.count()).where(Delivery.status == "sent"))
    print(
        f"dispatch: {sent} sent in {elapsed:.1f} s = {sent / elapsed:.1f}/s "
        f"({sent / elapsed / args.rate:.3f}× of {args.rate}/s); busiest 1 s window "
        f"{busiest} (by sent_at); peak RSS {peak[0] / 2**20:.0f} MB"
    )
    with factory.begin() as s:
        s.execute(delete(Test))


if __name__ == "__main__":
    main()
