"""The database's schema: one definition, reached by migrations that lose nothing."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from newsletter.db import open_database
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


def test_head_is_the_newest_migration() -> None:
    # migrate.HEAD is what lets start-up skip Alembic; a new migration must move it.
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [HEAD]


def test_a_new_database_gets_exactly_the_schema(tmp_path: Path) -> None:
    engine = open_database(url(tmp_path / "state" / "new.db"))
    assert set(inspect(engine).get_table_names()) == {*metadata.tables, VERSION_TABLE}
    assert revision(engine) == HEAD
    assert differences(engine) == []  # columns, types, nullability, keys and the index, as schema.py has them


def test_opening_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(url(path)) as ledger:
        run = ledger.start_run("2030-01")
        ledger.claim("2030-01", ["a@x.org"], run_id=run, batch_id="b1", variant="all")
        ledger.record_batch("2030-01", "b1", SENT, message_id="m1")
    before = dump(path)
    with Ledger(url(path)) as ledger:
        assert ledger.statuses("2030-01") == {"a@x.org": SENT}
    assert dump(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(HEAD,)]


def test_an_up_to_date_database_opens_without_loading_alembic(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(url(path)).close()
    check = textwrap.dedent(f"""
        import sys
        from newsletter.delivery.ledger import Ledger
        Ledger({url(path)!r}).close()
        print("alembic" in " ".join(sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_a_database_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(url(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = 'fffffffffff0'")
    before = dump(path)
    with pytest.raises(ConfigError, match="cannot open the ledger database: its schema is not one this release knows"):
        Ledger(url(path))
    assert dump(path) == before


def _open(db: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait(30)
    Ledger(db).close()


def test_processes_opening_a_new_database_together_all_succeed(tmp_path: Path) -> None:
    db = url(tmp_path / "state" / "new.db")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_open, args=(db, start)) for _ in range(4)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    with sqlite3.connect(tmp_path / "state" / "new.db") as conn:
        assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(HEAD,)]


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
    assert {name: rows for name, rows in after.items() if name in before} == before
    assert set(after) == set(metadata.tables)  # what that database lacked (the lease) is made
