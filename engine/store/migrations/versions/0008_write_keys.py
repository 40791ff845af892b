"""Write keys of the ingestion API, and which key wrote each event

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only a hash of each key is stored: the key itself is shown once, when it is created.
    op.create_table(
        "write_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_write_keys_name")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_write_keys_key_hash")),
    )
    # Nullable: events imported from files or made by the demo generator came through no key.
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("write_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("write_key_id")
    op.drop_table("write_keys")
