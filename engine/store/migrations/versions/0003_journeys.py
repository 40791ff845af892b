"""Journeys: step ids and outcomes on enrollments, playbook versions, message events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 03:22:35.497223
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("send_key", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=30), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("provider_event_id", sa.String(length=200), nullable=True),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_events")),
        sa.UniqueConstraint("provider_event_id", name=op.f("uq_message_events_provider_event_id")),
    )
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.create_index("ix_message_events_key", ["send_key", "event"], unique=False)

    op.create_table(
        "playbook_versions",
        sa.Column("playbook_id", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column(
            "spec", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "version", name=op.f("pk_playbook_versions")),
    )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("ended_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("ended_at")
        batch_op.drop_column("outcome")
        batch_op.drop_column("step_id")

    op.drop_table("playbook_versions")
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.drop_index("ix_message_events_key")

    op.drop_table("message_events")
