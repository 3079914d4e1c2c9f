"""retention: candidates' contact data can be erased

RETENTION_DAYS after a test's end its candidates' phone numbers, e-mail addresses and page
tokens are erased (commands.retention): the token becomes nullable, so an erased page
matches no link at all, and purged_at records when it was done.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

import store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("purged_at", store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.alter_column("notice_token", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # An erased token cannot come back: a purged candidate gets a new, never-sent one.
    candidates = sa.table(
        "candidates",
        sa.column("id", sa.Integer),
        sa.column("notice_token", sa.String),
    )
    connection = op.get_bind()
    for (id_,) in connection.execute(
        sa.select(candidates.c.id).where(candidates.c.notice_token.is_(None))
    ):
        connection.execute(
            candidates.update()
            .where(candidates.c.id == id_)
            .values(notice_token=secrets.token_urlsafe(32))
        )
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.alter_column("notice_token", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("purged_at")
