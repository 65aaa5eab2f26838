"""Skipped readers kept a range of addresses a row (``skips``), not a row each in ``deliveries``.

Revision ID: e5f0b7c2d913
Revises: a3c58e1f6b20

About half of a send's readers are skipped (their topics match no summary,
they unsubscribed...). A ``deliveries`` row each cost the database what a
reader sent costs, a row and an index entry: on PostgreSQL a third of the
server's work in a 100,000-reader send. A send now notes them a chunk of its
stream at a time, one row for each range of addresses
(``newsletter.delivery.skips``).

An issue's skipped rows become one sheet for all its addresses. Downgrading
writes them back as rows, for the readers that have no other row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "e5f0b7c2d913"
down_revision = "a3c58e1f6b20"
branch_labels = None
depends_on = None

_deliveries = sa.table(
    "deliveries",
    sa.column("issue_id", sa.String),
    sa.column("email", sa.String),
    sa.column("status", sa.String),
    sa.column("reason", sa.Text),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_skips = sa.table(
    "skips",
    sa.column("issue_id", sa.String),
    sa.column("after_key", sa.String),
    sa.column("last_key", sa.String),
    sa.column("readers", sa.Text),
    sa.column("written_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "skips",
        sa.Column("issue_id", sa.String(16), nullable=False),
        sa.Column("after_key", sa.String(320), nullable=False),
        sa.Column("last_key", sa.String(320)),
        sa.Column("readers", sa.Text, nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "after_key", name="one_sheet_per_range"),
    )
    conn = op.get_bind()
    d = _deliveries.c
    sheets: dict[str, dict[str, list[str]]] = {}
    written: dict[str, datetime] = {}
    for issue_id, email, reason, updated_at in conn.execute(
        sa.select(d.issue_id, d.email, d.reason, d.updated_at).where(d.status == "skipped")
    ):
        sheets.setdefault(issue_id, {}).setdefault(reason or "skipped", []).append(email)
        at = updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=UTC)  # SQLite's are naive UTC
        written[issue_id] = max(written.get(issue_id, at), at)
    if sheets:
        conn.execute(
            sa.insert(_skips),
            [
                {"issue_id": i, "after_key": "", "last_key": None, "readers": json.dumps(s), "written_at": written[i]}
                for i, s in sheets.items()
            ],
        )
    conn.execute(sa.delete(_deliveries).where(d.status == "skipped"))


def downgrade() -> None:
    conn = op.get_bind()
    d, s = _deliveries.c, _skips.c
    rows = []
    for issue_id, readers, at in conn.execute(sa.select(s.issue_id, s.readers, s.written_at)):
        for reason, emails in json.loads(readers).items():
            rows += [{"issue_id": issue_id, "email": e, "reason": reason, "at": at} for e in emails]
    for row in rows:
        taken = sa.select(d.email).where(d.issue_id == row["issue_id"], d.email == row["email"])
        if conn.execute(taken).first() is None:
            conn.execute(
                sa.insert(_deliveries).values(
                    issue_id=row["issue_id"],
                    email=row["email"],
                    status="skipped",
                    reason=row["reason"],
                    updated_at=row["at"],
                )
            )
    op.drop_table("skips")
