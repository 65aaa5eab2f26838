"""A batch the provider took is a row of ``sent_batches``; its readers' rows stay ``sending``.

Revision ID: b8d21c64e7a5
Revises: e5f0b7c2d913

Writing ``sent`` into each reader's row of a batch (~940 a request to
SendGrid) was a quarter of the database server's work in a send, and a third
of each claim's time: the answer went in with the next claim. Now the answer
is one row (``newsletter.delivery.answers`` reads the two together).

Rows already ``sent`` stay as they are: a row's own status still counts. The
downgrade writes the batches' answers back into their readers' rows.

On PostgreSQL the table's pages were filled half-way (``fillfactor=50``) so
that each answer could be written beside its claim without touching an
index; with the answers gone from the rows, that only made the table twice
its size. New pages are filled again (old ones as they are).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b8d21c64e7a5"
down_revision = "e5f0b7c2d913"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_batches",
        sa.Column("batch_id", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(255)),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")


def downgrade() -> None:
    answered = "SELECT {} FROM sent_batches AS s WHERE s.batch_id = deliveries.batch_id"
    op.execute(
        f"UPDATE deliveries SET status = 'sent', message_id = ({answered.format('s.message_id')}), "
        f"updated_at = ({answered.format('s.sent_at')}) "
        f"WHERE status = 'sending' AND EXISTS ({answered.format('1')})"
    )
    op.drop_table("sent_batches")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries SET (fillfactor = 50)")
