"""The database: one schema, versioned by Alembic migrations, and the one way to open it.

``open_database(url)`` gives an engine whose schema is at the newest
revision: a new database gets every table, an older one is upgraded in
place. The ledger opens it; the scheduler's tables share the ledger's
engine (APScheduler's job store alone connects by itself, to its own table).

May import: ``newsletter.settings``, ``newsletter.errors``, ``newsletter.support``.
"""

from newsletter.db.engine import database_now, open_database, snapshot_reads

__all__ = ["database_now", "open_database", "snapshot_reads"]
