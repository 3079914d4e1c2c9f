"""The schema comes from Alembic migrations, and the quick check knows the newest one."""

from sqlalchemy import inspect

from store import migrate
from store.models import Base


def test_head_constant_matches_alembic_head(engine):
    assert migrate.head_revision(engine) == migrate.HEAD


def test_migrated_database_is_up_to_date_and_has_every_model_table(engine):
    assert migrate.is_up_to_date(engine)
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables


def test_r3_smoke_world_runs_a_command(world):
    """R3: a world fixture with one candidate answers /candidate with the end time."""
    world.add_test()
    world.add_candidates("TDT4100-2026H", ["10023"], extra_minutes=30)
    reply = world.run("/candidate TDT4100-2026H 10023")
    assert reply.ok, reply.text
    assert "13:45" in reply.text  # 13:00 + 15 upload + 30 extra
