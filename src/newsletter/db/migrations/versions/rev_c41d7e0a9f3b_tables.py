"""The tables of the first releases, created where missing.

Revision ID: c41d7e0a9f3b
Revises: (none)

Releases before migrations created their tables at start-up and recorded no
revision, so a database of theirs has some or all of these tables, with
rows. Those tables are kept exactly as they are; only missing ones (and the
index) are made. The tables are spelt out here rather than taken from
``schema.py``: this revision must keep creating what it created when
``schema.py`` has moved on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c41d7e0a9f3b"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[sa.Table]:
    meta = sa.MetaData()
    return [
        sa.Table(
            "deliveries",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("issue_id", sa.String(16), nullable=False),
            sa.Column("email", sa.String(320), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("reason", sa.Text),
            sa.Column("variant", sa.String(64)),
            sa.Column("batch_id", sa.String(32)),
            sa.Column("run_id", sa.String(32)),
            sa.Column("message_id", sa.String(255)),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint("issue_id", "email", name="one_row_per_reader"),
        ),
        sa.Table(
            "runs",
            meta,
            sa.Column("run_id", sa.String(32), primary_key=True),
            sa.Column("issue_id", sa.String(16), nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("proc_start", sa.String(32)),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("finished_at", sa.DateTime(timezone=True)),
        ),
        sa.Table(
            "suppressions",
            meta,
            sa.Column("email", sa.String(320), primary_key=True),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        ),
        sa.Table(
            "schedule_send_at",
            meta,
            sa.Column("issue_id", sa.String(16), primary_key=True),
            sa.Column("send_at", sa.String(32), primary_key=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        ),
        sa.Table(
            "scheduler_lease",
            meta,
            sa.Column("name", sa.String(32), primary_key=True),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        ),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in _tables():
        if table.name not in existing:
            table.create(bind)
    if "deliveries_batch" not in {index["name"] for index in sa.inspect(bind).get_indexes("deliveries")}:
        op.create_index("deliveries_batch", "deliveries", ["batch_id"])


def downgrade() -> None:
    # Back to no schema at all, rows included: for a scratch database only.
    op.drop_index("deliveries_batch", table_name="deliveries")
    for table in reversed(_tables()):
        op.drop_table(table.name)
