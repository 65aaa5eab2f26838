"""Every table of the tool's database, in one ``MetaData``.

This is the schema as the code of this release expects it; the migrations
(``newsletter/db/migrations``) are how a database gets there. Change a table
here and add a migration in the same commit: ``tests/test_db.py`` compares
a freshly migrated database with this module and fails on any difference.

The tables, and who writes them:

- ``deliveries``: one row per issue and reader, the send ledger's outcomes
  (``newsletter.delivery.ledger`` tells its statuses).
- ``sent_batches``: the batches the provider took (their readers' rows say ``sending``).
- ``skips``: the readers a send skipped, with why: one row per range of
  addresses the send streamed (``newsletter.delivery.skips``).
- ``runs``: one row per send, so that claims left by a dead run are found.
- ``suppressions``: the email provider's do-not-send lists, copied locally.
- ``schedule_send_at``: which ``send_at`` times the scheduler has acted on.
- ``scheduler_lease``: which process runs the scheduler on this database.
- ``readers``: every reader, merged: the row of ``subscribers/*.csv`` as last
  synced, and the reader's own choice (sign-up, topics, unsubscribe) with its
  time (``newsletter.audience.readers`` merges them).
- ``reader_files``: the subscriber files as last synced, so an unchanged file costs no work.
- ``reader_problems``: the subscriber files' problems as that sync found them, in the order
  found, so unchanged files are not parsed again to report them (``newsletter.audience.sync``).
- ``signups``: sign-ups waiting for their confirmation link to be opened (48 hours at most).
- ``reader_mail``: when each address was last sent a confirmation or link email (rate limit).
- ``webhook_events``: the provider events already applied, so a replay changes nothing.

APScheduler's job store keeps its own table, ``apscheduler_jobs``
(``APSCHEDULER_JOBS``): APScheduler creates and reads it, so it is neither
here nor in the migrations.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text, text

APSCHEDULER_JOBS = "apscheduler_jobs"

metadata = MetaData()

_CLAIMED = text("batch_id IS NOT NULL")

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", String(16), nullable=False),
    Column("email", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("variant", String(64)),
    Column("batch_id", String(32)),
    Column("run_id", String(32)),
    Column("message_id", String(255)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # A claim is an insert that this key turns away when the reader has a row.
    # No surrogate id: every index is paid for by every reader of every send.
    PrimaryKeyConstraint("issue_id", "email", name="one_row_per_reader"),
    # Rows with no batch (queued) have no entry here.
    Index("deliveries_batch", "batch_id", postgresql_where=_CLAIMED, sqlite_where=_CLAIMED),
)

# The batches the provider took, a row each. Their readers' rows stay
# ``sending``: this row says they were sent (``delivery.answers``). Writing
# ``sent`` into each reader's row, ~940 a batch, was a quarter of the database
# server's work in a send and a third of each claim's time.
sent_batches = Table(
    "sent_batches",
    metadata,
    Column("batch_id", String(32), primary_key=True),
    Column("message_id", String(255)),  # the provider's id for the request
    Column("sent_at", DateTime(timezone=True), nullable=False),
)

# Half of a send's readers are skipped, and a row each was as dear as a
# reader sent (a row and an index entry): a third of the database server's
# work in a send. So they are kept a range of addresses a row: the range
# (after_key, last_key] as the send streamed it, and its skipped readers.
skips = Table(
    "skips",
    metadata,
    Column("issue_id", String(16), nullable=False),
    Column("after_key", String(320), nullable=False),  # the range's start, not in it ("": from the first)
    Column("last_key", String(320)),  # its end, in it (None: to the last reader)
    Column("readers", Text, nullable=False),  # JSON: reason -> the readers' keys
    Column("written_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("issue_id", "after_key", name="one_sheet_per_range"),
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

readers = Table(
    "readers",
    metadata,
    Column("key", String(320), primary_key=True),  # the address in lower case
    Column("email", String(320), nullable=False),  # as written
    # SHA-256 of the reader's link token: found by it, then compared in constant time.
    Column("token_hash", String(64), nullable=False, unique=True),
    # The subscriber file's row as last synced (all None: not in the files).
    Column("file_name", Text),
    Column("file_topics", Text),  # "all" or slugs joined by ";"
    Column("file_status", String(16)),
    Column("file_path", Text),
    Column("file_line", Integer),
    Column("file_at", DateTime(timezone=True)),  # when the row last changed (its file's mtime)
    # The reader's own choice (None: never chosen), and when it was made.
    Column("own_name", Text),
    Column("own_topics", Text),
    Column("own_status", String(16)),
    Column("own_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("readers_own_at", "own_at"),
)

reader_files = Table(
    "reader_files",
    metadata,
    Column("name", String(255), primary_key=True),  # "files": the subscriber files; "token": the link key
    Column("signature", Text, nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False),
)

reader_problems = Table(
    "reader_problems",
    metadata,
    Column("id", Integer, primary_key=True),  # the problem's place in the order the files were read
    Column("path", Text, nullable=False),  # relative to the subscriber folder's parent, as readers.file_path
    Column("line", Integer, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
)

signups = Table(
    "signups",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("name", Text, nullable=False),
    Column("topics", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("signups_created_at", "created_at"),
)

reader_mail = Table(
    "reader_mail",
    metadata,
    Column("key", String(320), primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("webhook_events_received_at", "received_at"),
)
