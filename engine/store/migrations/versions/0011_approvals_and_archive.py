"""Approvals of content, each message as it was sent, and the audit's keyset indexes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Keyset pages walk (at, id) backwards under each filter `touchflow audit` has: every filter
# column leads an index ending in (at, id), so a page costs the same at any depth or size.
AUDIT_INDEXES = {
    "ix_audit_log_at_id": ["at", "id"],
    "ix_audit_log_playbook_at_id": ["playbook_id", "at", "id"],
    "ix_audit_log_account_at_id": ["account_id", "at", "id"],
    "ix_audit_log_contact_at_id": ["contact_id", "at", "id"],
    "ix_audit_log_reason_at_id": ["reason", "at", "id"],
    "ix_audit_log_decision_at_id": ["decision", "at", "id"],
    "ix_audit_log_send_key": ["send_key"],
}
REPLACED = {"ix_audit_log_playbook_at": ["playbook_id", "at"], "ix_audit_log_account_at": ["account_id", "at"]}


def upgrade() -> None:
    # Append-only: an approval applies while the content still hashes to what was approved.
    op.create_table(
        "approvals",
        sa.Column("id", BigId, nullable=False),
        sa.Column("playbook_id", sa.String(length=100), nullable=False),
        sa.Column("step_id", sa.String(length=100), nullable=False),
        sa.Column("arm", sa.String(length=40), nullable=False),
        sa.Column("locale", sa.String(length=20), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=320), nullable=False),
        sa.Column("approved_at", sa.DateTime(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index("ix_approvals_content", "approvals", ["playbook_id", "step_id", "arm", "locale", "content_hash"])
    # The message as it went out (its parts as handed to the channel, JSON, zlib), kept for the retention.
    op.create_table(
        "message_archive",
        sa.Column("send_key", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("archived_at", sa.DateTime(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("send_key", name=op.f("pk_message_archive")),
    )
    op.create_index("ix_message_archive_archived_at", "message_archive", ["archived_at"])
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        for name in REPLACED:
            batch_op.drop_index(name)
        for name, columns in AUDIT_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        for name in AUDIT_INDEXES:
            batch_op.drop_index(name)
        for name, columns in REPLACED.items():
            batch_op.create_index(name, columns, unique=False)
    op.drop_index("ix_message_archive_archived_at", table_name="message_archive")
    op.drop_table("message_archive")
    op.drop_index("ix_approvals_content", table_name="approvals")
    op.drop_table("approvals")
