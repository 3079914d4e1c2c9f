"""Retention: RETENTION_DAYS after a test's end its candidates' contact data is erased."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import OSLO, SUPPORT, oslo
from dbstate import snapshot
from sqlalchemy import select, update
from test_inapp_page import server  # noqa: F401 - the page's real web server
from test_scheduler import start, wait_until  # noqa: F401 - the real scheduler

from bot.config import Settings
from bot.runtime import scheduler as sched
from commands import history, report, report_files
from commands.context import Ctx
from commands.delivery import SYSTEM_ACTOR
from commands.lookup import get_test
from commands.registry import CANDIDATE_COLUMNS, import_candidates
from commands.retention import purge
from store.models import Candidate, Change, Delivery
from store.models import Test as ExamTest

ENDED = "TDT4100-2026H"  # ordinary end 2026-12-01 13:15, 30 min extra: ends 13:45
POSTPONED = "TMA4100-2026H"  # one candidate's postponed deadline 2026-12-20 12:00
OPEN = "TFY4125-2026H"  # a no-limit new delivery still open
# 60 days after the end of ENDED, and a minute before.
DUE = "2027-01-30 13:45"
NOT_YET = "2027-01-30 13:44"


@pytest.fixture
def exams(world, tmp_path):
    """Three finished tests; ENDED's candidates came from the registry with phone and e-mail
    and got a notice (SMS rows with their addresses)."""
    world.add_test(ENDED)
    world.add_test(POSTPONED, start="2026-12-02 09:00", end="2026-12-02 13:00")
    world.add_test(OPEN, start="2026-12-01 09:00", end="2026-12-01 11:00")
    path = tmp_path / "candidates.csv"
    path.write_text(
        ",".join(CANDIDATE_COLUMNS)
        + f"\n{ENDED},10001,41234567,kari@example.no,nb,30,,,started"
        + f"\n{ENDED},10002,+4790000002,ola@example.no,en,,,,started"
        + f"\n{ENDED},10003,,,nb,,,,started\n"
    )
    with world.factory.begin() as s:
        import_candidates(world.ctx(s), path)
    world.add_candidates(POSTPONED, ["20001"])
    world.add_candidates(POSTPONED, ["20002"], postponed_deadline=oslo("2026-12-20 12:00"))
    world.add_candidates(OPEN, ["30001"])
    notice = world.at("2026-12-01 11:00").run(f"/notice {ENDED} Oppgave 3.", confirmed=True)
    assert notice.ok, notice.text
    with world.factory.begin() as s:
        # Twilio's answer, with the number in its message as Twilio words some errors.
        s.execute(
            update(Delivery)
            .where(Delivery.status == "pending")
            .values(status="undelivered", error_message="+4741234567 is unreachable")
        )
    reopened = world.at("2026-12-01 12:00").run(
        f"/reopen {OPEN} 30001 no-limit x --quiet", confirmed=True
    )
    assert reopened.ok, reopened.text
    return world


def report_json(world) -> dict:
    with world.factory() as s:
        built = report.build(s, get_test(db_session=s, test_code=ENDED), now=world.now)
        return report_files.as_json(built, OSLO)


def contacts(world, code: str) -> dict[str, tuple]:
    with world.factory() as s:
        rows = s.execute(
            select(Candidate.number, Candidate.phone, Candidate.email, Candidate.notice_token)
            .join(ExamTest, ExamTest.id == Candidate.test_id)
            .where(ExamTest.code == code)
        ).all()
    return {number: (phone, email, token) for number, phone, email, token in rows}


def test_purge_dry_run_says_what_it_would_erase_and_changes_nothing(exams, cli, session_factory):
    exams.at(NOT_YET)
    early = cli("purge", "--dry-run")
    assert early.returncode == 0, early.stderr
    assert early.stdout.startswith("Nothing to erase: no test that ended more than 60 days ago")
    exams.at(DUE)
    before = snapshot(session_factory)
    result = cli("purge", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Would erase the phone numbers, e-mail addresses and page links of 3 candidates of 1 "
        "test (RETENTION_DAYS=60):",
        f"  {ENDED}: 3 candidates (ended 2026-12-01 13:45 CET)",
        "Nothing was changed (--dry-run).",
    ]
    assert snapshot(session_factory) == before


def test_purge_erases_contact_data_keeps_the_record_and_the_report(exams, cli, server):  # noqa: F811
    """R15: the anonymous change record and the report's facts stay; phone numbers, e-mail
    addresses, page tokens and the notifier's delivery addresses go; the page answers 404."""
    tokens = {n: token for n, (_, _, token) in contacts(exams, ENDED).items()}
    assert httpx.get(f"{server.url}/notices/{tokens['10001']}").status_code == 200
    exams.at(DUE)
    report_before = report_json(exams)
    result = cli("purge")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "Erased the phone numbers, e-mail addresses and page links of 3 candidates of 1 test "
        "(RETENTION_DAYS=60):",
        f"  {ENDED}: 3 candidates (ended 2026-12-01 13:45 CET)",
    ]
    assert contacts(exams, ENDED) == {n: (None, None, None) for n in ("10001", "10002", "10003")}
    # The other tests have not ended long enough ago, or not at all.
    assert all(phone for phone, _, _ in contacts(exams, POSTPONED).values())
    assert all(token for _, _, token in contacts(exams, OPEN).values())
    for token in tokens.values():
        assert httpx.get(f"{server.url}/notices/{token}").status_code == 404
    with exams.factory() as s:
        deliveries = s.execute(select(Delivery.address, Delivery.error_message)).all()
        assert deliveries and all(row == (None, None) for row in deliveries)
        record = json.dumps(
            [(c.before, c.after) for c in s.scalars(select(Change).order_by(Change.id))]
        )
        purged = s.scalars(select(Change).where(Change.action == "retention_purge")).one()
        assert purged.actor.startswith("cli:") and purged.after == {"candidates": 3}
    for gone in ("41234567", "4790000002", "kari@", "ola@"):
        assert gone not in record
    assert '"phone": "erased"' in record
    # The report's facts are the same, down to every count.
    report_after = report_json(exams)
    assert report_after | {"generated_at": None} == report_before | {"generated_at": None}
    shown = exams.run(f"/candidate {ENDED} 10001 history")
    assert shown.ok and "phone erased" in shown.text and "extra time 30 min" in shown.text
    with exams.factory() as s:
        log = history.log_text(s, get_test(db_session=s, test_code=ENDED), None, OSLO)
    assert "contact data erased (retention)" in log
    again = cli("purge")
    assert again.stdout.startswith("Nothing to erase"), again.stdout


def test_a_test_ends_at_its_last_deadline_and_an_open_reopening_keeps_it_running(exams):
    """R2, R6: a postponed deadline moves the test's end; a no-limit reopening that is still
    open means the test has not ended, however long ago its exam time was."""
    with exams.at("2027-02-18 11:59").factory.begin() as s:
        found = purge(Ctx(db_session=s, actor=SUPPORT, tz=OSLO, now=exams.now), days=60)
        assert [(d.test, len(d.candidate_ids)) for d in found] == [(ENDED, 3)]
    with exams.at("2027-02-18 12:00").factory.begin() as s:
        found = purge(Ctx(db_session=s, actor=SUPPORT, tz=OSLO, now=exams.now), days=60)
        assert [(d.test, len(d.candidate_ids)) for d in found] == [(POSTPONED, 2)]
    with exams.at("2030-01-01 00:00").factory.begin() as s:
        assert purge(Ctx(db_session=s, actor=SUPPORT, tz=OSLO, now=exams.now), days=60) == []
    assert all(token for _, _, token in contacts(exams, OPEN).values())


def test_retention_days_comes_from_the_environment_and_is_checked(exams, cli):
    exams.at("2026-12-11 13:45")
    ten = cli("purge", "--dry-run", env={"RETENTION_DAYS": "10"})
    assert ten.returncode == 0, ten.stderr
    assert f"{ENDED}: 3 candidates" in ten.stdout and "(RETENTION_DAYS=10)" in ten.stdout
    refused = cli("purge", env={"RETENTION_DAYS": "0"})
    assert refused.returncode == 1
    assert "RETENTION_DAYS" in refused.stderr and "Traceback" not in refused.stderr
    assert all(phone for phone, _, _ in list(contacts(exams, ENDED).values())[:2])
    for bad in ("sixty", "-5", "100000"):
        with pytest.raises(ValueError, match="retention_days"):
            Settings(_env_file=None, retention_days=bad)
    assert Settings(_env_file=None).retention_days == 60


def test_the_daily_scheduler_job_purges(exams, start):  # noqa: F811
    """The scheduler's retention job runs at start and then daily, as the system."""
    exams.at(DUE)
    scheduler = start()
    job = scheduler.get_job(sched.RETENTION_PURGE)
    assert job is not None and job.trigger.interval.days == 1
    wait_until(lambda: contacts(exams, ENDED)["10002"] == (None, None, None))
    with exams.factory() as s:
        change = s.scalars(select(Change).where(Change.action == "retention_purge")).one()
    assert change.actor == SYSTEM_ACTOR and change.reason.startswith("RETENTION_DAYS=60")


def test_a_delivery_never_sent_in_all_that_time_is_failed_as_erased(exams, cli):
    """Its address is gone, so the notifier can never send it; it says why."""
    with exams.factory.begin() as s:
        s.execute(update(Delivery).values(status="pending", error_message=None))
    exams.at(DUE)
    assert cli("purge").returncode == 0
    with exams.factory() as s:
        rows = s.execute(select(Delivery.status, Delivery.error_code, Delivery.address)).all()
    assert rows and set(rows) == {("failed", "erased", None)}
