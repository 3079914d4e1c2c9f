"""Phone numbers, e-mail addresses and page links are masked in every log and every Slack
text, whichever transport (issue 15, item 8): the log-only channels, Twilio's and the mail
server's error texts."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from conftest import OSLO, World
from fake_twilio import Fail, FakeTwilio, phone, seed_candidates, twilio_settings
from sqlalchemy import select

from bot import blocks_notices
from bot.settings import Settings
from notifications.dispatch import Tuning, from_settings
from notifications.masking import scrub
from notifications.progress import progress
from store import clock
from store.models import Candidate, Delivery

FAST = Tuning(backoff_base=0.05, backoff_cap=0.2, poll_seconds=0.05, send_timeout=2)


def running(world: World, code: str = "TDT4100-2026H", *, hours: int = 4, **kw) -> str:
    """A test running now on the real clock (the server and dispatcher use it)."""
    world.now = clock.now().replace(second=0, microsecond=0)
    local = world.now.astimezone(OSLO)
    return world.add_test(
        code,
        start=f"{local - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{local + timedelta(hours=hours - 1):%Y-%m-%d %H:%M}",
        **kw,
    )


def dispatch_all(settings: Settings, session_factory) -> None:
    dispatcher = from_settings(settings, session_factory, tuning=FAST)
    try:
        while dispatcher.dispatch_batch():
            pass
    finally:
        dispatcher.close()


def test_scrub_masks_numbers_addresses_and_page_tokens_but_not_dates_or_candidates():
    text = (
        "'To' and 'From' number cannot be the same: +4741234567; call +47 73 59 66 01 or "
        "kari@uni.no; https://exams.example.org/notices/Zx_9-abc#n3; candidate 10023 at "
        "2026-12-01 10:00"
    )
    assert scrub(text) == (
        "'To' and 'From' number cannot be the same: +••••••••67; call +••••••••01 or "
        "k•••@uni.no; https://exams.example.org/notices/•••#n3; candidate 10023 at "
        "2026-12-01 10:00"
    )
    # The address a provider was given is masked however it is written.
    assert scrub("rejected 41234567", address="41234567") == "rejected +••••••67"


def test_r13_log_only_transports_write_no_full_number_address_or_page_token(world, caplog):
    school = running(world, "SCHOOL-1")
    home = world.add_test(
        "HOME-8H",
        kind="home",
        start=f"{world.now.astimezone(OSLO) - timedelta(hours=1):%Y-%m-%d %H:%M}",
        end=f"{world.now.astimezone(OSLO) + timedelta(hours=7):%Y-%m-%d %H:%M}",
    )
    world.add_candidates(school, ["101"], phone="+4741234567")
    world.add_candidates(home, ["201"], phone="+4741234568", email="kari.nordmann@uni.no")
    for code in (school, home):
        text = "Task 3: n = 10. Questions: +47 73 59 66 01 or exam.support@uni.no"
        assert world.run(f"/notice {code} {text}", confirmed=True).ok
    settings = Settings(_env_file=None, public_url="https://exams.example.org")
    with caplog.at_level(logging.INFO):
        dispatch_all(settings, world.factory)
    with world.factory() as s:
        tokens = list(s.scalars(select(Candidate.notice_token)))
    logged = [r.getMessage() for r in caplog.records if "logged instead of sent" in r.message]
    assert len(logged) == 2
    everything = caplog.text + "\n".join(logged)
    for secret in (
        "+4741234567",
        "+4741234568",
        "kari.nordmann@uni.no",
        "exam.support@uni.no",
        "+47 73 59 66 01",
        *tokens,
    ):
        assert secret not in everything
    assert "to=+••••••••67" in everything and "to=k•••@uni.no" in everything
    assert "https://exams.example.org/notices/•••#n" in everything


def test_a_twilio_error_that_quotes_the_number_is_masked_in_the_record_and_in_slack(world):
    code = running(world)
    seed_candidates(world.factory, code, 2)
    with FakeTwilio() as fake:
        fake.always[phone(1)] = Fail(
            400, 21266, message=f"'To' and 'From' number cannot be the same: {phone(1)}"
        )
        notice = world.run(f"/notice {code} Task 3: n = 10.", confirmed=True)
        dispatch_all(twilio_settings(fake.url), world.factory)
    with world.factory() as s:
        failed = s.scalars(select(Delivery).where(Delivery.status == "failed")).one()
        state = progress(db_session=s, notice_id=notice.data["notice_id"])
    assert phone(1) not in failed.error_message and "+••••••••01" in failed.error_message
    shown = blocks_notices.summary_text(state) + json.dumps(blocks_notices.progress_blocks(state))
    assert "10001" in shown and "+••••••••01" in shown and phone(1) not in shown


def test_r13_a_log_only_notice_is_logged_never_sent_in_the_record_and_in_slack(world):
    """Without Twilio or SMTP nothing reaches a candidate: the deliveries say `logged`, and
    the notice's progress in Slack and `status --json` count them apart from `sent`."""
    school = running(world, "SCHOOL-1")
    world.add_candidates(school, ["101", "102"], phone="+4741234567")
    assert world.run(f"/notice {school} Task 3: n = 10.", confirmed=True).ok
    dispatch_all(Settings(_env_file=None), world.factory)
    with world.factory() as s:
        statuses = list(s.scalars(select(Delivery.status)))
        notice_id = s.scalar(select(Delivery.notice_id))
        line = blocks_notices.progress_line(progress(db_session=s, notice_id=notice_id))
    assert statuses == ["logged", "logged"]
    assert "2 only written to the log (not configured, not sent)" in line
    assert " sent" not in line.replace("not sent", "")
