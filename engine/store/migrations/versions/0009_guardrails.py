"""Guardrails: when each data source last received data, and playbooks held by their circuit

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # One row per source: a table ('accounts', 'contacts', 'csms') or an event name
    # ('event:login'). Written by whatever brings data in (import, the ingestion API).
    op.create_table(
        "data_sources",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("last_data_at", sa.DateTime(), nullable=True),
        sa.Column("last_arrived_at", sa.DateTime(), nullable=True),
        sa.Column("arrivals", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_data_sources")),
    )
    # A playbook whose circuit opened stays held until someone resumes it.
    op.create_table(
        "playbook_holds",
        sa.Column("playbook_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("tripped_at", sa.DateTime(), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.Column("resumed_at", sa.DateTime(), nullable=True),
        sa.Column("resumed_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("playbook_id", name=op.f("pk_playbook_holds")),
    )


def downgrade() -> None:
    op.drop_table("playbook_holds")
    op.drop_table("data_sources")
