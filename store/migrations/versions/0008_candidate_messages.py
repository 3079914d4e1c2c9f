"""candidate messages: a delivery that is no notice's

A message to one candidate after a change to them (their new deadline, a reopening, a
delivery made for them) is a delivery row with its own text and no notice: notice_id
becomes nullable, the body and subject are stored with the row, and next_attempt_at is
the moment it may go out (several changes within a minute make one message).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("notice_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("subject", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))


def downgrade() -> None:
    deliveries = sa.table("deliveries", sa.column("notice_id", sa.Integer))
    op.get_bind().execute(deliveries.delete().where(deliveries.c.notice_id.is_(None)))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("body")
        batch_op.drop_column("subject")
        batch_op.alter_column("notice_id", existing_type=sa.Integer(), nullable=False)
