"""Every table of the tool's database, in one ``MetaData``.

This is the schema as the code of this release expects it; the migrations
(``newsletter/db/migrations``) are how a database gets there. Change a table
here and add a migration in the same commit: ``tests/test_db.py`` compares
a freshly migrated database with this module and fails on any difference.

The tables, and who writes them:

- ``deliveries``: one row per issue and reader, the send ledger's outcomes
  (``newsletter.delivery.ledger`` tells its statuses).
- ``runs``: one row per send, so that claims left by a dead run are found.
- ``suppressions``: the email provider's do-not-send lists, copied locally.
- ``schedule_send_at``: which ``send_at`` times the scheduler has acted on.
- ``scheduler_lease``: which process runs the scheduler on this database.

APScheduler's job store keeps its own table, ``apscheduler_jobs``
(``APSCHEDULER_JOBS``): APScheduler creates and reads it, so it is neither
here nor in the migrations.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

APSCHEDULER_JOBS = "apscheduler_jobs"

metadata = MetaData()

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", String(16), nullable=False),
    Column("email", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("variant", String(64)),
    Column("batch_id", String(32)),
    Column("run_id", String(32)),
    Column("message_id", String(255)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # A claim is an insert that this constraint turns away when the reader has a row.
    UniqueConstraint("issue_id", "email", name="one_row_per_reader"),
    Index("deliveries_batch", "batch_id"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("issue_id", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("proc_start", String(32)),  # the process's start time, so a reused pid is not taken for it
    Column("pid_space", String(64)),  # where the pid means something (support.processes.pid_space)
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False),
)

send_at_attempts = Table(
    "schedule_send_at",
    metadata,
    Column("issue_id", String(16), primary_key=True),
    Column("send_at", String(32), primary_key=True),  # UTC, ISO 8601: a new send_at is a new attempt
    Column("state", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

scheduler_lease = Table(
    "scheduler_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("pid_space", String(64)),
)
