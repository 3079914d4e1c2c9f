"""notice receipts: "opened" apart from "confirmed read"

Until now opening the page set read_at, and link previews (SMS apps, mail scanners) open
pages too. opened_at now holds the first opening by a browser; read_at only the candidate's
own confirmation. What read_at held so far was an opening, so it moves to opened_at.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.types

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notice_receipts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("opened_at", store.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE notice_receipts SET opened_at = read_at, read_at = NULL")


def downgrade() -> None:
    op.execute(
        "UPDATE notice_receipts SET read_at = COALESCE(read_at, opened_at) "
        "WHERE opened_at IS NOT NULL"
    )
    with op.batch_alter_table("notice_receipts", schema=None) as batch_op:
        batch_op.drop_column("opened_at")
