"""The customer's own ids on the store's rows: what `touchflow import` matches rows on

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column): nullable, as rows made by the demo generator or before this revision have
# none; unique where present (both databases let any number of NULLs share a unique index).
_KEYS = (
    ("csms", "external_id"),
    ("accounts", "external_id"),
    ("contacts", "external_id"),
    ("events", "event_id"),
)


def upgrade() -> None:
    for table, column in _KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.String(length=200), nullable=True))
            batch_op.create_index(f"ix_{table}_{column}", [column], unique=True)


def downgrade() -> None:
    for table, column in reversed(_KEYS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_{column}")
            batch_op.drop_column(column)
