"""Policy: caps history, experiment arm and claim token on the ledger, task dedupe and queues, locks, rate limits

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approved_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("variant", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_ledger_contact_approved", ["contact_id", "approved_at"], unique=False)
        batch_op.create_index("ix_ledger_account_approved", ["account_id", "approved_at"], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("queue", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False))
        batch_op.create_index("ix_tasks_open_reason", ["account_id", "dedupe_key", "status"], unique=False)
    locks = op.create_table(
        "locks",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("held_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_locks")),
    )
    op.bulk_insert(locks, [{"name": "policy", "held_at": None}])
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("next_free_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rate_limits")),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("locks")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_open_reason")
        batch_op.drop_column("occurrences")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("queue")
        batch_op.drop_column("dedupe_key")
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_account_approved")
        batch_op.drop_index("ix_ledger_contact_approved")
        batch_op.drop_column("claim_token")
        batch_op.drop_column("variant")
        batch_op.drop_column("approved_at")
