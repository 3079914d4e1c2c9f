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


def test_migrations_build_exactly_the_models_schema(engine):
    """Alembic finds nothing to generate: the migrations and store/models.py agree,
    indexes (partial ones too) included."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


def test_upgrading_a_0001_database_keeps_its_rows_and_adds_the_overview_indexes(tmp_path):
    """A database made before the overview indexes is upgraded in place, rows untouched."""
    from sqlalchemy import text

    from store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.alembic_config(engine)
    migrate.upgrade(engine, "0001")
    _add_one_candidate(engine)
    assert migrate.current_revision(engine) == "0001"
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("candidates")}
    assert {
        "ix_candidates_test_id_status",
        "ix_candidates_with_extra",
        "ix_candidates_with_incident",
        "ix_candidates_with_own_end",
    } <= indexes
    assert "ix_candidates_test_id" not in indexes
    with engine.connect() as conn:
        row = conn.execute(text("SELECT number, extra_minutes, incident_minutes FROM candidates"))
        assert row.all() == [("10023", 30, 5)]
    engine.dispose()


def test_0003_puts_the_list_indexes_in_number_order_and_downgrades_back(tmp_path):
    """0003 rebuilds the three partial list indexes on (test_id, number, the condition's
    columns), keeping their conditions and the rows; its downgrade restores 0002's."""
    from sqlalchemy import text

    from store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.alembic_config(engine)

    def to(revision: str, step=migrate.upgrade) -> None:
        step(engine, revision)

    def list_indexes() -> dict[str, list[str]]:
        return {
            ix["name"]: ix["column_names"]
            for ix in inspect(engine).get_indexes("candidates")
            if ix["name"].startswith("ix_candidates_with_")
        }

    to("0002")
    _add_one_candidate(engine)
    assert set(map(tuple, list_indexes().values())) == {("test_id",)}
    migrate.upgrade(engine)
    assert list_indexes() == {
        "ix_candidates_with_extra": ["test_id", "number", "extra_minutes"],
        "ix_candidates_with_incident": ["test_id", "number", "incident_minutes"],
        "ix_candidates_with_own_end": [
            "test_id",
            "number",
            "postponed_deadline",
            "individual_deadline",
        ],
    }
    with engine.connect() as conn:
        listed = "SELECT number FROM candidates INDEXED BY {} WHERE test_id = 1 AND {}"
        assert conn.execute(
            text(listed.format("ix_candidates_with_incident", "incident_minutes != 0"))
        ).all() == [("10023",)]
    to("0002", migrate.downgrade)
    assert set(map(tuple, list_indexes().values())) == {("test_id",)}
    with engine.connect() as conn:
        row = conn.execute(text("SELECT number, extra_minutes, incident_minutes FROM candidates"))
        assert row.all() == [("10023", 30, 5)]
    engine.dispose()


def test_0004_adds_the_seen_slack_requests_and_downgrades_back(tmp_path):
    """0004 adds the table of seen Slack requests (replays and retries, across processes)
    with its index for pruning; the rows of a 0003 database stay, and the downgrade drops
    only the new table."""
    from alembic import command
    from sqlalchemy import text

    from store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = migrate.alembic_config(engine)

    def to(revision: str, step=command.upgrade) -> None:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            step(config, revision)

    to("0003")
    _add_one_candidate(engine)
    assert not inspect(engine).has_table("seen_slack_requests")
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    indexes = {
        ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("seen_slack_requests")
    }
    assert indexes == {"ix_seen_slack_requests_signed_at": ["signed_at"]}
    to("0003", command.downgrade)
    assert not inspect(engine).has_table("seen_slack_requests")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT number FROM candidates")).all() == [("10023",)]
    engine.dispose()


def _add_one_candidate(engine) -> None:
    """Test 1 with candidate 10023 (30 min extra, 5 min incident), written as plain SQL so
    that it fits the schema of any revision."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO tests (id, code, title, kind, start, "end", has_upload, '
                "auto_deliver, updated_at) VALUES (1, 'T-1', 'T', 'school', "
                "'2026-12-01 08:00:00', '2026-12-01 12:00:00', 1, 1, '2026-11-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO candidates (test_id, number, language, extra_minutes, "
                "incident_minutes, status, notice_token) VALUES (1, '10023', 'nb', 30, 5, "
                "'started', 'tok')"
            )
        )


def test_0007_makes_the_page_token_erasable_and_downgrades_with_fresh_tokens(tmp_path):
    """Retention: 0007 adds purged_at and lets the page token be erased (NULL), keeping the
    rows and the partial indexes; its downgrade gives an erased token a new, unsent one."""
    from sqlalchemy import text

    from store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.alembic_config(engine)

    def to(revision: str, step=migrate.upgrade) -> None:
        step(engine, revision)

    to("0003")
    _add_one_candidate(engine)
    to("0007")
    columns = {c["name"]: c for c in inspect(engine).get_columns("candidates")}
    assert columns["notice_token"]["nullable"] and columns["purged_at"]["nullable"]
    assert {ix["name"] for ix in inspect(engine).get_indexes("candidates")} >= {
        "ix_candidates_with_extra",
        "ix_candidates_with_incident",
        "ix_candidates_with_own_end",
    }
    with engine.begin() as conn:
        assert conn.execute(text("SELECT number, notice_token FROM candidates")).all() == [
            ("10023", "tok")
        ]
        conn.execute(text("UPDATE candidates SET notice_token = NULL, phone = NULL"))
    to("0003", migrate.downgrade)
    with engine.connect() as conn:
        (token,) = conn.execute(text("SELECT notice_token FROM candidates")).one()
    assert token and token != "tok" and len(token) >= 40
    engine.dispose()
