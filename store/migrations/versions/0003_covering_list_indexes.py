"""candidate list indexes in number order, covering their conditions

/exam counts the candidates with extra time, incident time or an end of their own and lists
the first few of each by number. On 0002's indexes (test_id only) SQLite read every listed
row of the table to check the condition, and found the first few of a sparse list (three own
ends among 2,000) by walking the whole test in number order: 0.2 ms. Indexed on (test_id,
number, the condition's columns) both come from the index alone (0.02 ms).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Copied, not imported: a migration must keep creating what it created when it was written.
PARTIAL = {
    "ix_candidates_with_extra": ("extra_minutes > 0", ["extra_minutes"]),
    "ix_candidates_with_incident": ("incident_minutes != 0", ["incident_minutes"]),
    "ix_candidates_with_own_end": (
        "postponed_deadline IS NOT NULL OR individual_deadline IS NOT NULL",
        ["postponed_deadline", "individual_deadline"],
    ),
}


def _recreate(columns_of: dict[str, list[str]]) -> None:
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        for name, (where, _) in PARTIAL.items():
            batch_op.drop_index(name)
            batch_op.create_index(
                name,
                columns_of[name],
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )


def upgrade() -> None:
    _recreate({name: ["test_id", "number", *extra] for name, (_, extra) in PARTIAL.items()})


def downgrade() -> None:
    _recreate({name: ["test_id"] for name in PARTIAL})
