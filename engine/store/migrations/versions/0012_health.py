"""Health scores explained by their components, churn dates, closed tasks

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The components behind each score, so every score can be explained later.
    with op.batch_alter_table("health_history", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("components", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True)
        )
    # When an account churned: what the health backtest measures the score against.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("churned_on", sa.Date(), nullable=True))
    # A task closed by its CSM, with an outcome: what portfolios count.
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("closed_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("closed_by")
        batch_op.drop_column("outcome")
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("churned_on")
    with op.batch_alter_table("health_history", schema=None) as batch_op:
        batch_op.drop_column("components")
