"""Condition state for edge-triggered playbooks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 03:01:33.853891
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "condition_state",
        sa.Column("playbook_id", sa.String(length=100), nullable=False),
        sa.Column("subject_type", sa.String(length=10), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("is_true", sa.Boolean(), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "subject_type", "subject_id", name=op.f("pk_condition_state")),
    )


def downgrade() -> None:
    op.drop_table("condition_state")
