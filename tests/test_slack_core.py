"""The Slack-free parts behind the app: confirmations and the App Home's data."""

from __future__ import annotations

from datetime import timedelta

from conftest import OSLO, STRANGER, SUPPORT, TEACHER, World
from sqlalchemy import func, select

from commands import confirmations, home
from store.models import Change, Confirmation


def _offer(world: World, command: str, *, age: timedelta = timedelta(0)) -> str:
    with world.factory() as s:
        token = confirmations.offer(
            db_session=s, actor=SUPPORT, command=command, now=world.now - age
        )
        s.commit()
    return token


def test_confirmation_tokens_are_unguessable_and_distinct(world: World):
    tokens = {_offer(world, "/exam X") for _ in range(20)}
    assert len(tokens) == 20 and all(len(t) >= 32 for t in tokens)


def test_stale_confirmation_is_refused_and_changes_nothing_r4(world: World):
    world.add_test()
    world.add_candidates("TDT4100-2026H", [1, 2])
    token = _offer(world, "/incident-time TDT4100-2026H all add 10 x", age=timedelta(hours=2))
    reply = confirmations.apply(
        session_factory=world.factory, token=token, actor=SUPPORT, tz=OSLO, now=world.now
    )
    assert not reply.ok and "expired" in reply.text
    assert world.candidate("TDT4100-2026H", "1").incident_minutes == 0
    with world.factory() as s:
        assert s.get(Confirmation, token).used_at is None


def test_confirmed_command_runs_as_the_clicking_user_and_records_who(world: World):
    world.add_test()
    world.add_candidates("TDT4100-2026H", [1, 2])
    world.add_staff("U0SUPPORT9", "support")
    token = _offer(world, "/incident-time TDT4100-2026H all set 7 storm")
    reply = confirmations.apply(
        session_factory=world.factory, token=token, actor="U0SUPPORT9", tz=OSLO, now=world.now
    )
    assert reply.ok and reply.log and "<@U0SUPPORT9>" in reply.log[0]
    assert world.candidate("TDT4100-2026H", "2").incident_minutes == 7


def _counts(world: World) -> tuple[int, int]:
    with world.factory() as s:
        return (
            s.scalar(select(func.count()).select_from(Confirmation)),
            s.scalar(select(func.count()).select_from(Change)),
        )


def _run_offering(world: World, command_line: str):
    return confirmations.run_offering(
        session_factory=world.factory,
        actor=SUPPORT,
        command_line=command_line,
        tz=OSLO,
        now=world.now,
    )


def test_preview_of_all_is_stored_with_its_offer_and_changes_nothing_else_r4(world: World):
    world.add_test()
    world.add_candidates("TDT4100-2026H", [1, 2])
    reply = _run_offering(world, "/incident-time TDT4100-2026H all add 10 storm")
    assert reply.needs_confirmation and reply.confirm.token
    assert _counts(world) == (1, 0)
    assert world.candidate("TDT4100-2026H", "1").incident_minutes == 0
    with world.factory() as s:
        stored = s.get(Confirmation, reply.confirm.token)
        assert (stored.command, stored.actor, stored.used_at) == (
            "/incident-time TDT4100-2026H all add 10 storm",
            SUPPORT,
            None,
        )
    applied = confirmations.apply(
        session_factory=world.factory,
        token=reply.confirm.token,
        actor=SUPPORT,
        tz=OSLO,
        now=world.now,
    )
    assert applied.ok and world.candidate("TDT4100-2026H", "2").incident_minutes == 10


def test_refusals_and_plain_commands_store_no_offer_r4(world: World):
    world.add_test()
    world.add_candidates("TDT4100-2026H", [1, 2])
    refused = _run_offering(world, "/incident-time TDT4100-2026H all subtract 5 oops")
    assert not refused.ok and refused.confirm is None
    changed = _run_offering(world, "/incident-time TDT4100-2026H 1 add 5 upload failed")
    assert changed.ok and changed.confirm is None
    assert _counts(world) == (0, 1)


def test_home_for_support_lists_running_and_next_tests_with_counts(world: World):
    world.at("2026-12-01 10:00")
    world.add_test("NOW-1", start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_test("LATER-1", start="2026-12-02 09:00", end="2026-12-02 13:00")
    world.add_test("DONE-1", start="2026-11-30 09:00", end="2026-11-30 13:00")
    world.add_candidates("NOW-1", [1, 2], status="started")
    world.add_candidates("NOW-1", [3], status="submitted")
    with world.factory() as s:
        data = home.build(db_session=s, user_id=SUPPORT, now=world.now)
    assert [t.code for t in data.running] == ["NOW-1"]
    assert data.running[0].by_status == {"started": 2, "submitted": 1}
    # Nothing more today: the Home names the next test after today instead.
    assert data.upcoming == [] and [t.code for t in data.coming] == ["LATER-1"]


def test_home_running_includes_the_upload_allowance_r1(world: World):
    # Exam time ended 10 minutes ago, but the 15-minute upload allowance has not.
    world.at("2026-12-01 13:10")
    world.add_test("NOW-1", start="2026-12-01 09:00", end="2026-12-01 13:00", kind="school")
    with world.factory() as s:
        assert [t.code for t in home.build(db_session=s, user_id=SUPPORT, now=world.now).running]
    world.at("2026-12-01 13:16")
    with world.factory() as s:
        assert home.build(db_session=s, user_id=SUPPORT, now=world.now).running == []


def test_home_for_a_teacher_shows_only_own_tests_and_no_change_log_r15(world: World):
    world.add_test("MINE-1", start="2026-12-01 09:00", end="2026-12-01 13:00")
    world.add_test("OTHER-1", start="2026-12-01 09:00", end="2026-12-01 13:00", teachers=())
    world.add_candidates("OTHER-1", [1])
    assert world.run("/incident-time OTHER-1 all add 5 x", confirmed=True).ok
    world.run("/reopen OTHER-1 1 until-close y")
    with world.factory() as s:
        data = home.build(db_session=s, user_id=TEACHER, now=world.now)
    assert [t.code for t in data.running] == ["MINE-1"]
    assert data.changes == [] and data.open_deliveries == []
    with world.factory() as s:
        support = home.build(db_session=s, user_id=SUPPORT, now=world.now)
    assert len(support.changes) == 2 and len(support.open_deliveries) == 1


def test_home_for_someone_without_a_role_says_whom_to_ask_r15(world: World):
    with world.factory() as s:
        data = home.build(db_session=s, user_id=STRANGER, now=world.now)
    assert data.role is None and f"<@{SUPPORT}>" in data.explanation
