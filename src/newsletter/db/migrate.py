"""Bringing a database's schema to the newest revision, at start-up, with Alembic.

Every ``open_database`` calls ``upgrade``. On a database already at ``HEAD``
(every start-up but the first after installing a release with a new
migration) that costs one query, and Alembic is not even imported: it takes
longer to import (~0.1 s) than the rest of opening the database.

Otherwise the migrations run in one transaction that holds the database's
write lock (SQLite: the engine's ``BEGIN IMMEDIATE``; PostgreSQL: an advisory
lock), so two processes opening a new database at once take turns: the
second finds the schema made, and does nothing.

To add a migration: change ``schema.py``; draft the migration with
``alembic.command.revision(alembic_config(conn), "what changed", autogenerate=True)``
(``conn`` from ``open_database(url).begin()`` on a scratch database), review
it, and set ``HEAD`` to its revision. ``tests/test_db.py`` fails until the
three agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "b8d21c64e7a5"
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# Any fixed number: the advisory lock that PostgreSQL sessions migrating this database take turns on.
PG_LOCK = 0x6E6577736C6574  # "newslet"


def revision(engine: Engine) -> str | None:
    """The database's schema revision; None for a new database or one from before migrations (or unreadable)."""
    # Through the driver, outside a transaction: on SQLite the engine's BEGIN
    # IMMEDIATE would make this read wait behind a send's writes.
    try:
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(f"SELECT version_num FROM {VERSION_TABLE}")
            row = cursor.fetchone()
            cursor.close()
        finally:
            conn.close()
    except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error):
        return None  # no version table yet; anything worse shows again in ``upgrade``
    return str(row[0]) if row else None


def upgrade(engine: Engine) -> None:
    """Apply the migrations the database lacks, if any, in one transaction holding the write lock."""
    if revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.util.exc import CommandError

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK})
        try:
            command.upgrade(alembic_config(conn), "head")
        except CommandError as err:
            # Most likely a database already upgraded by a newer release of the tool.
            raise ConfigError(
                f"cannot open the ledger database: its schema is not one this release knows: {err}"
            ) from None


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built here rather than read from an alembic.ini.

    ``migrations/env.py`` runs the migrations on ``connection`` (in the
    caller's transaction) and on nothing else.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    # A file name must be a module name (ruff, mypy); a revision id may start with a digit.
    config.set_main_option("file_template", "rev_%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config
