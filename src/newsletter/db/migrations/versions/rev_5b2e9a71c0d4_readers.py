"""Readers in the database: the merged list, pending sign-ups, mail rate limits, provider events.

Revision ID: 5b2e9a71c0d4
Revises: c41d7e0a9f3b

Tables spelt out here, not taken from ``schema.py``, so this revision keeps
creating what it created when ``schema.py`` moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5b2e9a71c0d4"
down_revision = "c41d7e0a9f3b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "readers",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("file_name", sa.Text),
        sa.Column("file_topics", sa.Text),
        sa.Column("file_status", sa.String(16)),
        sa.Column("file_path", sa.Text),
        sa.Column("file_line", sa.Integer),
        sa.Column("file_at", sa.DateTime(timezone=True)),
        sa.Column("own_name", sa.Text),
        sa.Column("own_topics", sa.Text),
        sa.Column("own_status", sa.String(16)),
        sa.Column("own_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("readers_own_at", "readers", ["own_at"])
    op.create_table(
        "reader_files",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "signups",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("topics", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("signups_created_at", "signups", ["created_at"])
    op.create_table(
        "reader_mail",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("webhook_events_received_at", "webhook_events", ["received_at"])


def downgrade() -> None:
    op.drop_index("webhook_events_received_at", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_table("reader_mail")
    op.drop_index("signups_created_at", table_name="signups")
    op.drop_table("signups")
    op.drop_table("reader_files")
    op.drop_index("readers_own_at", table_name="readers")
    op.drop_table("readers")
