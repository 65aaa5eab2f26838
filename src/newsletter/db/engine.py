"""Opening the database: an engine for a URL, its schema brought up to date.

On SQLite every connection works in WAL mode with ``synchronous=FULL``, and
every transaction starts with ``BEGIN IMMEDIATE``, holding the write lock
from its first statement (see ``connect``).

PostgreSQL goes through psycopg 3 (``pip install 'newsletter[postgres]'``):
``postgresql://user@host/db`` means ``postgresql+psycopg://``, rather than
SQLAlchemy's default driver (psycopg2), which the tool neither needs nor ships.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from newsletter.db.migrate import upgrade
from newsletter.errors import ConfigError

# How long a connection waits for another's write lock, and for the WAL switch.
PATIENCE = 60.0


def open_database(url: str) -> Engine:
    """An engine for ``url`` whose schema is at the newest revision; ConfigError if it cannot be had."""
    engine = connect(url)
    try:
        upgrade(engine)
    except SQLAlchemyError as err:
        engine.dispose()
        raise ConfigError(
            f"cannot open the ledger database: {type(err).__name__}: {getattr(err, 'orig', None) or err}"
        ) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def connect(url: str) -> Engine:
    """An engine for ``url``, its schema untouched (``open_database`` brings it up to date)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///file:"):  # a URI names a file that exists
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, connect_args={"timeout": PATIENCE} if parsed.drivername == "sqlite" else {})
    except ImportError as err:
        extra = " (pip install 'newsletter[postgres]')" if url.startswith("postgres") else ""
        raise ConfigError(f"NEWSLETTER_DATABASE_URL needs a driver that is not installed: {err.name}{extra}") from None
    except (SQLAlchemyError, ValueError) as err:
        raise ConfigError(f"NEWSLETTER_DATABASE_URL is not usable: {type(err).__name__}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN is deferred; a claim must hold the write lock
        # from its first statement or two writers can deadlock on upgrade.
        # So does a migration: the second process to open a new database
        # waits here, then finds the schema made.
        event.listen(engine, "begin", _begin_immediate)
    return engine


def snapshot_reads(engine: Engine) -> Engine:
    """An engine for reads that take no lock: ``engine`` itself, or on a SQLite file a plain one of its own.

    ``connect`` starts every SQLite transaction with BEGIN IMMEDIATE (the
    write lock, for the ledger's claims), so a read through it (a page
    looking a reader up, ``newsletter status`` during a send) would queue
    behind every write and hold writers up while it reads. In WAL mode a
    plain connection reads a snapshot beside the writer instead. Its opener
    disposes of it when it is not ``engine``.
    """
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return create_engine(engine.url, connect_args={"timeout": PATIENCE})
    return engine


def database_now(conn: Connection) -> datetime:
    """The database's clock, in UTC.

    Runs and the scheduler's lease write their heartbeats with it and are
    judged by it: with processes on several machines, one clock, so that a
    machine whose clock is off cannot take a live run elsewhere for a dead one.
    """
    value: datetime = conn.execute(select(func.current_timestamp())).scalar_one()
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite's: naive UTC


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # WAL lets readers (status, audience) work while a send writes.
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see connect)
    cursor = dbapi_conn.cursor()
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")  # a lost claim could mean a resend
    cursor.close()


def _use_wal(cursor: sqlite3.Cursor, patience: float = PATIENCE) -> None:
    """Switch a database to WAL, once, even when several processes open it at once.

    The switch needs an exclusive lock and SQLite answers "database is locked"
    at once, without the busy timeout, when another connection holds one: two
    `send`s started together on a new database hit exactly that. The mode is
    stored in the file, so whoever switches first does it for everyone.
    """
    deadline = time.monotonic() + patience
    delay = 0.01
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return  # switched, or a database that cannot use WAL (in memory)
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
