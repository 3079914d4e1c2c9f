"""Crashes and concurrency: a worker killed with SIGKILL mid-broadcast and restarted sends
every SMS exactly once; two workers on PostgreSQL share a large notice with none sent twice
and none lost (R13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from conftest import SUPPORT
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, phone, seed_candidates, wait_until
from sqlalchemy import func, select
from test_dispatch import running_exam

from store.models import Delivery


def worker_env(database_url: str, fake: FakeTwilio, rate: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TWILIO_", "SMTP"))}
    return env | {
        "DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": "+4759440000",
        "TWILIO_API_URL": fake.url,
        "PUBLIC_URL": "https://exams.example.org",
        "SMS_PER_SECOND": str(rate),
        # Short claims keep the test quick. Reconciliation waits a few seconds so that a
        # request still being handled by a slow (loaded) fake shows up in its list first.
        "NOTIFIER_SEND_TIMEOUT": "2",
        "NOTIFIER_CLAIM_SECONDS": "2",
        "NOTIFIER_RECONCILE_AFTER": "3",
        "NOTIFIER_MAINTAIN_SECONDS": "0.3",
        "NOTIFIER_POLL_SECONDS": "0.05",
        "NOTIFIER_LEASE_SECONDS": "3",
    }


def start_worker(env: dict[str, str], tmp_path, name: str) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "bot.runtime.cli", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def statuses(session_factory) -> Counter:
    with session_factory() as s:
        return Counter(
            dict(
                (status, n)
                for status, n in s.execute(
                    select(Delivery.status, func.count()).group_by(Delivery.status)
                )
            )
        )


def test_r13_worker_killed_mid_broadcast_sends_each_sms_exactly_once(world, database_url, tmp_path):
    count = 300
    code = running_exam(world)
    seed_candidates(world.factory, code, count)
    assert world.run(f"/notice {code} Task 3b: n = 10.", actor=SUPPORT, confirmed=True).ok

    with FakeTwilio(delay=0.03) as fake:
        env = worker_env(database_url, fake, rate=100)
        first = start_worker(env, tmp_path, "first")
        try:
            wait_until(lambda: len(fake.accepted) >= 80, timeout=60)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        at_kill = statuses(world.factory)
        assert at_kill["pending"] > 0  # it really died mid-broadcast

        second = start_worker(env, tmp_path, "second")
        try:
            try:
                wait_until(lambda: statuses(world.factory) == Counter({"sent": count}), timeout=240)
            except AssertionError:
                log = (tmp_path / "second.log").read_text()[-3000:]
                raise AssertionError(f"{statuses(world.factory)}\n{log}") from None
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        finally:
            if second.poll() is None:
                second.kill()
        assert fake.sent_to() == Counter({phone(n): 1 for n in range(1, count + 1)})


def test_two_workers_on_postgresql_share_a_notice_none_twice_none_lost(
    world, database_url, is_postgres, tmp_path
):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (run with TEST_DATABASE_URL=postgresql+psycopg://…)")
    count = 2000
    code = running_exam(world)
    seed_candidates(world.factory, code, count)
    assert world.run(f"/notice {code} Task 3b: n = 10.", actor=SUPPORT, confirmed=True).ok

    with FakeTwilio(delay=0.01) as fake:
        env = worker_env(database_url, fake, rate=400)
        workers = [start_worker(env, tmp_path, f"worker{i}") for i in range(2)]
        try:
            wait_until(lambda: statuses(world.factory) == Counter({"sent": count}), timeout=180)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(30) for worker in workers]
        assert codes == [0, 0]
        assert fake.sent_to() == Counter({phone(n): 1 for n in range(1, count + 1)})
        with world.factory() as s:
            senders = Counter(
                s.scalars(select(Delivery.provider_id).where(Delivery.provider_id.is_not(None)))
            )
        assert len(senders) == count
