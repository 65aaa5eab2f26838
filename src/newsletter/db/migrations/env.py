"""Alembic's entry point: run the migrations on the connection ``newsletter.db.migrate`` hands over.

Only that way, never on a connection of Alembic's own: the caller's
transaction is what holds the write lock (see ``migrate.upgrade``). There is
no offline (``--sql``) mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import context
from sqlalchemy.engine import Connection

from newsletter.db.schema import APSCHEDULER_JOBS, metadata

if TYPE_CHECKING:
    from alembic.runtime.environment import NameFilterParentNames, NameFilterType


def ours(name: str | None, kind: NameFilterType, parents: NameFilterParentNames) -> bool:
    # APScheduler owns its table: a drafted migration must not drop it.
    return not (kind == "table" and name == APSCHEDULER_JOBS)


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the migrations through newsletter.db.migrate.upgrade, which passes a connection")
context.configure(
    connection=connection,
    target_metadata=metadata,
    include_name=ours,
    # SQLite's DDL is transactional once the driver leaves BEGIN to us (the
    # engine's BEGIN IMMEDIATE): a migration cut short leaves nothing behind.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
