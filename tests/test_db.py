"""The database's schema: one definition, reached by migrations that lose nothing."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Engine

from newsletter.db import open_database
from newsletter.db.engine import connect
from newsletter.db.migrate import HEAD, VERSION_TABLE, alembic_config, revision
from newsletter.db.schema import APSCHEDULER_JOBS, metadata
from newsletter.delivery.ledger import SENT, Ledger
from newsletter.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# The last release before the package was split into layers (and before migrations).


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def differences(engine: Engine) -> list[object]:
    """What Alembic's autogenerate would change to make the database match ``schema.py``."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": lambda name, *_: name != APSCHEDULER_JOBS})
        return list(compare_metadata(context, metadata))


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table but Alembic's, read with plain sqlite3."""
    with sqlite3.connect(path) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: conn.execute(f"SELECT * FROM {n} ORDER BY 1, 2").fetchall() for n in names if n != VERSION_TABLE}


def dump_any(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table but Alembic's, on either database, with no schema upgrade on the way."""
    engine = connect(url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as conn:
            return {
                name: [tuple(row) for row in conn.execute(table.select().order_by(*list(table.columns)[:2]))]
                for name, table in tables.tables.items()
                if name != VERSION_TABLE
            }
    finally:
        engine.dispose()


def version_of(url: str) -> list[tuple[object, ...]]:
    engine = connect(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()


def test_head_is_the_newest_migration() -> None:
    # migrate.HEAD is what lets start-up skip Alembic; a new migration must move it.
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [HEAD]


def test_a_new_database_gets_exactly_the_schema(database_url: str) -> None:
    engine = open_database(database_url)
    assert set(inspect(engine).get_table_names()) == {*metadata.tables, VERSION_TABLE}
    assert revision(engine) == HEAD
    assert differences(engine) == []  # columns, types, nullability, keys and the index, as schema.py has them
    engine.dispose()


def test_opening_again_changes_nothing(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        run = ledger.start_run("2030-01")
        ledger.enqueue("2030-01", ["a@x.org"])
        ledger.claim("2030-01", ["a@x.org"], run_id=run, batch_id="b1", variant="all")
        ledger.record_batch("2030-01", "b1", SENT, message_id="m1")
    before = dump_any(database_url)
    with Ledger(database_url) as ledger:
        assert ledger.statuses("2030-01") == {"a@x.org": SENT}
    assert dump_any(database_url) == before
    assert version_of(database_url) == [(HEAD,)]


def test_an_up_to_date_database_opens_without_loading_alembic(database_url: str) -> None:
    Ledger(database_url).close()
    check = textwrap.dedent(f"""
        import sys
        from newsletter.delivery.ledger import Ledger
        Ledger({database_url!r}).close()
        print("alembic" in " ".join(sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_a_database_from_a_newer_release_is_refused_untouched(database_url: str) -> None:
    Ledger(database_url).close()
    engine = connect(database_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'fffffffffff0'"))
    engine.dispose()
    before = dump_any(database_url)
    with pytest.raises(ConfigError, match="cannot open the ledger database: its schema is not one this release knows"):
        Ledger(database_url)
    assert dump_any(database_url) == before


# The revision before pid spaces, and rows a release at it wrote.
BEFORE_PID_SPACE = "c41d7e0a9f3b"
OLD_RUN = {"run_id": "r1", "issue_id": "2030-01", "host": "old-host", "pid": 42, "proc_start": "7"}


def test_a_database_at_the_previous_revision_is_upgraded_with_every_row(database_url: str) -> None:
    engine = connect(database_url)
    now = datetime(2021, 7, 1, 9, tzinfo=UTC)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), BEFORE_PID_SPACE)
        conn.execute(
            text(
                "INSERT INTO runs (run_id, issue_id, host, pid, proc_start, started_at, heartbeat_at) "
                "VALUES (:run_id, :issue_id, :host, :pid, :proc_start, :now, :now)"
            ),
            {**OLD_RUN, "now": now},
        )
        conn.execute(text("INSERT INTO scheduler_lease VALUES ('scheduler', 'old-host', 43, :now, :now)"), {"now": now})
        conn.execute(
            text(
                "INSERT INTO deliveries (issue_id, email, status, run_id, batch_id, updated_at) "
                "VALUES ('2030-01', 'a@x.org', 'sending', 'r1', 'b1', :now)"
            ),
            {"now": now},
        )
    engine.dispose()
    before = dump_any(database_url)
    assert "pid_space" not in {c["name"] for c in inspect(connect(database_url)).get_columns("runs")}

    with Ledger(database_url) as ledger:
        assert revision(ledger.engine) == HEAD
        assert differences(ledger.engine) == []
        assert ledger.counts("2030-01") == {"sending": 1}
        # the old run is judged by its host name, as that release did: elsewhere, and silent for years
        assert ledger.settle_orphans("2030-01") == ["a@x.org"]
    after = dump_any(database_url)
    assert [row[:-1] for row in after["runs"]] == before["runs"] and after["runs"][0][-1] is None
    assert [row[:-1] for row in after["scheduler_lease"]] == before["scheduler_lease"]


# The revision before deliveries were keyed by issue and reader, and rows a release at it wrote.
BEFORE_DELIVERIES_KEY = "9d573b877520"
LEDGER_ROWS = [  # issue, address, status, reason, variant, batch, run, message id
    ("2030-01", "a@x.org", "sent", None, "all", "b1", "r1", "m1"),
    ("2030-01", "b@x.org", "skipped", "unsubscribed", None, None, None, None),
    ("2030-01", "c@x.org", "failed", "refused", "01", "b2", "r1", None),
    ("2030-02", "a@x.org", "queued", None, None, None, None, None),
]


def test_a_ledger_keyed_by_a_surrogate_id_is_keyed_by_issue_and_reader_with_every_row(database_url: str) -> None:
    engine = connect(database_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), BEFORE_DELIVERIES_KEY)
        for row in reversed(LEDGER_ROWS):  # ids in another order than the key's
            conn.execute(
                text(
                    "INSERT INTO deliveries (issue_id, email, status, reason, variant, batch_id, run_id, "
                    "message_id, updated_at) VALUES (:i, :e, :s, :r, :v, :b, :run, :m, :now)"
                ),
                dict(zip(("i", "e", "s", "r", "v", "b", "run", "m"), row, strict=True))
                | {"now": datetime(2030, 1, 1, 9, tzinfo=UTC)},
            )
    engine.dispose()

    with Ledger(database_url) as ledger:
        assert revision(ledger.engine) == HEAD and differences(ledger.engine) == []
        names = {c["name"] for c in inspect(ledger.engine).get_columns("deliveries")}
        assert "id" not in names
        assert inspect(ledger.engine).get_pk_constraint("deliveries")["constrained_columns"] == ["issue_id", "email"]
        # every row kept; the skipped reader's now in the issue's sheet of skipped readers
        assert [row[:8] for row in dump_any(database_url)["deliveries"]] == [
            r for r in LEDGER_ROWS if r[2] != "skipped"
        ]
        assert [(r.email, r.reason) for r in ledger.rows("2030-01", ["skipped"])] == [("b@x.org", "unsubscribed")]
        # claims find rows by the key: the failed reader and the queued one are taken, the sent one is not
        run = ledger.start_run("2030-01")
        assert ledger.claim("2030-01", ["a@x.org", "c@x.org"], run_id=run, batch_id="b3", variant="all") == ["c@x.org"]
        assert ledger.claim("2030-02", ["a@x.org"], run_id=run, batch_id="b4", variant="all") == ["a@x.org"]
        ledger.record_batch("2030-02", "b4", "sent", message_id="m4")  # a row of sent_batches, the reader's `sending`
        # a row with an answer pending is in the batch index; one with no batch is not
        with ledger.engine.connect() as conn:
            where = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'deliveries_batch'"
                if ledger.engine.dialect.name == "postgresql"
                else "SELECT sql FROM sqlite_master WHERE name = 'deliveries_batch'"
            ).scalar_one()
            if ledger.engine.dialect.name == "postgresql":
                options = conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'deliveries'")
                assert options.scalar_one() is None  # full pages: a batch's answer is a row of its own
        assert "batch_id IS NOT NULL" in where
        ledger.finish_run(run)

    # and back: the rows kept, each with an id again
    engine = connect(database_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), BEFORE_DELIVERIES_KEY)
    engine.dispose()
    rows = dump_any(database_url)["deliveries"]
    assert sorted(row[0] for row in rows) == [1, 2, 3, 4]
    # (the sent batch's answer written into its reader's row)
    assert sorted((row[1], row[2], row[3], row[8]) for row in rows) == [
        ("2030-01", "a@x.org", "sent", "m1"),
        ("2030-01", "b@x.org", "skipped", None),
        ("2030-01", "c@x.org", "sending", None),
        ("2030-02", "a@x.org", "sent", "m4"),
    ]


def _open(db: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait(30)
    Ledger(db).close()


def test_processes_opening_a_new_database_together_all_succeed(database_url: str) -> None:
    # On SQLite the migrating transaction holds the write lock (BEGIN
    # IMMEDIATE); on PostgreSQL an advisory lock: either way the others wait,
    # then find the schema made.
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_open, args=(database_url, start)) for _ in range(4)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert version_of(database_url) == [(HEAD,)]


# Written by release e802a9d's own code (tests/data/previous_release_db.py made it).
PREVIOUS_RELEASE_DB = REPO / "tests" / "data" / "ledger-release-e802a9d.db"


def test_a_database_of_the_previous_release_is_upgraded_with_every_row(tmp_path: Path) -> None:
    path = tmp_path / "state" / "newsletter.db"
    path.parent.mkdir()
    shutil.copy(PREVIOUS_RELEASE_DB, path)
    before = dump(path)
    assert VERSION_TABLE not in before  # as every release before migrations left it
    assert len(before["deliveries"]) == 4 and len(before["suppressions"]) == 2 and len(before["schedule_send_at"]) == 1

    with Ledger(url(path)) as ledger:
        assert ledger.counts("2021-07") == {"sent": 2, "failed": 1, "skipped": 1}
        assert ledger.suppressed() == {"e@x.org": "bounce", "f@x.org": "spam report"}
        assert revision(ledger.engine) == HEAD
        assert differences(ledger.engine) == []
    after = dump(path)
    # every row kept; runs gained pid_space last (NULL: judged by host name, as that release did);
    # deliveries lost their surrogate id, first
    before["deliveries"] = [row[1:] for row in before["deliveries"]]
    # and skipped readers are kept a range of addresses a row (here one, for every address)
    moved = [row for row in before["deliveries"] if row[2] == "skipped"]
    before["deliveries"] = [row for row in before["deliveries"] if row[2] != "skipped"]
    assert [
        (issue, after_key, last_key, json.loads(readers)) for issue, after_key, last_key, readers, _ in after["skips"]
    ] == [(row[0], "", None, {row[3]: [row[1]]}) for row in moved]
    grown = {"runs"}
    kept = {name: [row[: len(row) - (name in grown)] for row in rows] for name, rows in after.items() if name in before}
    assert kept == before and all(row[-1] is None for row in after["runs"])
    assert set(after) == set(metadata.tables)  # what that database lacked (the lease) is made
