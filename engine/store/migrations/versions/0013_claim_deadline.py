"""Claims expire by the wall clock: ledger.claimed_at

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 21:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # When a dispatcher claimed the row, by the real clock (naive UTC), not the tick's `now`:
    # a re-run at the same `--now` must still see a dead dispatcher's claim expire.
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
