"""Readers record the sync that last found them in the subscriber files.

Revision ID: c38430df7e0e
Revises: 9d573b877520

A sync streams the files a few thousand rows at a time rather than holding
every reader: it marks each row it finds with its own number, so that the
readers gone from the files are the rows it did not mark, and an address
already marked was already on an earlier row. Rows from before this revision
have none (NULL): the next sync that reads the files marks every reader
still in them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c38430df7e0e"
down_revision = "9d573b877520"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("readers", sa.Column("file_sync", sa.Integer))


def downgrade() -> None:
    # batch mode: SQLite before 3.35 cannot drop a column in place
    with op.batch_alter_table("readers") as batch:
        batch.drop_column("file_sync")
