"""Runs and the scheduler's lease record the pid space of their process.

Revision ID: 7e84fb11a480
Revises: c41d7e0a9f3b

A pid says whether a process is alive only to a process that sees the same
pids: on the same boot of the same machine, in the same PID namespace. The
host name does not tell that (containers often share the machine's), so a
sender on another machine, or in another container, could take a live run
of pid 1 for its own dead one. Rows from before this revision have no pid
space (NULL) and are judged by host name, as they were.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "7e84fb11a480"
down_revision = "5b2e9a71c0d4"
branch_labels = None
depends_on = None

TABLES = ("runs", "scheduler_lease")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("pid_space", sa.String(64)))


def downgrade() -> None:
    for table in TABLES:
        # batch mode: SQLite before 3.35 cannot drop a column in place
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pid_space")
