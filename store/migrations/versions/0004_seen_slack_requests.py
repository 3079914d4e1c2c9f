"""seen Slack requests: replays and retries are recognised across processes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_slack_requests",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("signed_at", store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_seen_slack_requests")),
    )
    op.create_index(op.f("ix_seen_slack_requests_signed_at"), "seen_slack_requests", ["signed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_seen_slack_requests_signed_at"), table_name="seen_slack_requests")
    op.drop_table("seen_slack_requests")
