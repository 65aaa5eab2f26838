"""The subscriber files synced into the database: each reader's file layer, and the files' problems.

Parsing ``subscribers/*.csv`` validates every address, ~0.7 s per 100k
readers: too slow to repeat in every command, and a send that streams a
million readers from the database must not. So a sync keeps the files'
names, sizes and modification times (their signature) in ``reader_files``,
and the problems ``read_subscribers`` found (bad addresses, malformed rows,
unknown topics) in ``reader_problems``. While the signature is unchanged a
sync reads no file: one query says so, one more gives the problems. When it
changed, the files are read a row at a time and written a chunk at a time
(``file_layer``), so a sync's memory does not grow with the readers; the
readers' file layer, the problems and the new signature are written in one
transaction: nobody reads half a sync, and a failed one leaves the last. So
the files are parsed inside it, a chunk between two writes, holding the write
lock throughout (a million readers: ~20 s on SQLite, ~25 s on PostgreSQL).

Paths are stored relative to the subscriber folder's parent, so a newsletter
folder moved elsewhere keeps its readers and its problems. The signature
names the folder: a renamed folder is synced again, since the paths and
messages stored name the old one.

A reader's link token is an HMAC of their address (``links.Links.token``),
passed in as a function; ``readers.token_hash`` keeps its SHA-256 to find a
reader by it, and ``reader_files`` the key's fingerprint, so that a new
secret rehashes every reader.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.engine import Connection, Engine

from newsletter.audience.file_layer import CHUNK, FileLayers, executemany, now, stored_path, token_hash
from newsletter.audience.subscribers import Subscriber, SubscriberList, subscriber_files
from newsletter.content.taxonomy import Taxonomy
from newsletter.db.schema import reader_files, reader_problems, readers
from newsletter.errors import Problem

FILES = "files"  # reader_files row of the subscriber files' signature
TOKEN_KEY = "token"  # reader_files row of the link key's fingerprint
# SQLite's page cache during a sync, in KiB (negative: a size, not a number of pages).
SYNC_CACHE = -32768
# Any fixed number but db.migrate's: the advisory lock that PostgreSQL sessions syncing take turns on.
PG_SYNC_LOCK = 0x72656164657273  # "readers"
# One writer at a time in this process. SQLite lets one transaction write at
# a time anyway, and a thread that finds the lock taken sleeps in SQLite's busy
# handler, up to 100 ms a try: under 200 concurrent saves that sleeping was
# most of the time. Threads queued on this lock wake the moment it is free.
WRITES = threading.Lock()


@contextmanager
def _page_cache(conn: Connection) -> Iterator[None]:
    """SQLite's page cache at ``SYNC_CACHE`` for a sync, then as it was (the connection goes back to the pool).

    Tokens are random, so each new reader lands on a random page of the
    token_hash index: with SQLite's default 2 MB cache, writing the first
    million readers spent ~4 s more re-reading and spilling those pages.
    A fixed size, so a sync's memory does not grow with the readers.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    before = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    conn.exec_driver_sql(f"PRAGMA cache_size = {SYNC_CACHE:d}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {before:d}")


def _signatures(conn: Connection) -> dict[str, str]:
    return dict(conn.execute(select(reader_files.c.name, reader_files.c.signature)).all())


class FileSync:
    """Keeps the ``readers`` table's file layer and ``reader_problems`` in step with the subscriber files."""

    def __init__(self, engine: Engine, reads: Engine, token: Callable[[str], str]) -> None:
        self.engine = engine
        self.reads = reads  # takes no write lock (see ``ReaderStore``)
        self._token = token

    @staticmethod
    def signature(folder: Path) -> tuple[str, dict[str, datetime]]:
        """The folder's name and its files' names, sizes and mtimes as one string, and each file's mtime."""
        parts, mtimes = [folder.name], {}
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            try:
                stat = path.stat()
            except OSError:
                continue
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
            mtimes[str(path)] = datetime.fromtimestamp(stat.st_mtime, UTC)
        return "/".join(parts), mtimes

    def fingerprint(self) -> str:
        # Changes exactly when NEWSLETTER_SECRET does: every token_hash must then be made again.
        return token_hash(self._token("\x00fingerprint"))

    def refresh(self, folder: Path, taxonomy: Taxonomy, found: SubscriberList | None = None) -> bool:
        """Bring the file layer up to date with the files; False (one query) when nothing changed."""
        return self._update(folder, taxonomy, found)[0]

    def sync(self, folder: Path, taxonomy: Taxonomy) -> list[Problem]:
        """Bring the file layer up to date, and the files' problems: as stored while the files are unchanged."""
        problems = self._update(folder, taxonomy)[1]
        return self.problems(folder) if problems is None else problems

    def problems(self, folder: Path) -> list[Problem]:
        """The files' problems as the last sync found them, their paths under ``folder`` where it is now."""
        with self.reads.connect() as conn:
            columns = (reader_problems.c[c] for c in ("path", "line", "severity", "message"))
            rows = conn.execute(select(*columns).order_by(reader_problems.c.id))
            # Per file, not per problem: thousands of bad rows share a few paths.
            paths: dict[str, Path] = {}
            return [
                Problem(paths.get(path) or paths.setdefault(path, folder.parent / path), line, severity, message)
                for path, line, severity, message in rows
            ]

    def _update(
        self, folder: Path, taxonomy: Taxonomy, found: SubscriberList | None = None
    ) -> tuple[bool, list[Problem] | None]:
        """Whether anything was synced (False: one query), and the files' problems if they were read."""
        # Taken before parsing: a file changed in between leaves a signature that is synced again next time.
        signature, mtimes = self.signature(folder)
        fingerprint = self.fingerprint()
        with self.reads.connect() as conn:
            stored = _signatures(conn)
        if stored.get(FILES) == signature and stored.get(TOKEN_KEY) == fingerprint:
            return False, None
        problems = None
        with WRITES, self.engine.begin() as conn, _page_cache(conn):
            if conn.dialect.name == "postgresql":
                # SQLite's BEGIN IMMEDIATE is the write lock: here a second sync waits, then finds the first's.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_SYNC_LOCK})
            # Another process may have synced since we looked: look again under the write lock.
            stored = _signatures(conn)
            if stored.get(FILES) == signature and stored.get(TOKEN_KEY) == fingerprint:
                return False, None
            if stored.get(TOKEN_KEY) != fingerprint:
                self._rehash(conn)
            if stored.get(FILES) != signature:
                # Parsed as written, inside the transaction: a failure anywhere leaves the last sync's state.
                rows: Iterable[Subscriber | Problem] = subscriber_files(folder, taxonomy)
                if found is not None:
                    rows = chain[Subscriber | Problem](found.subscribers, found.problems)
                problems = FileLayers(conn, folder, mtimes, self._token).write(rows)
                _write_problems(conn, folder, problems)
            for name, value in ((FILES, signature), (TOKEN_KEY, fingerprint)):
                _upsert(conn, {"name": name, "signature": value, "synced_at": now()})
        if self.engine.dialect.name == "postgresql":  # here the sync wrote readers: their files or their hashes
            _vacuum_readers(self.engine)
        return True, problems

    def _rehash(self, conn: Connection) -> None:
        """Every reader's token_hash made again with the new key, a page of readers at a time."""
        after = ""  # keys are never empty
        while page := conn.execute(
            select(readers.c.key, readers.c.email).where(readers.c.key > after).order_by(readers.c.key).limit(CHUNK)
        ).all():
            hashes = [(token_hash(self._token(email)), key) for key, email in page]
            executemany(conn, "UPDATE readers SET token_hash = ? WHERE key = ?", hashes)
            after = page[-1].key


def _vacuum_readers(engine: Engine) -> None:
    """PostgreSQL: the readers' table vacuumed and its statistics taken, once a sync has written it.

    Now, not when autovacuum gets to it: a send that follows streams the
    readers by key, a chunk at a time, and a planner that takes the table
    for empty scans it whole for each; and autovacuum's pass over a million
    rows just written came in the middle of that send, on its cores. A
    vacuum of a table mostly unchanged reads only the pages that changed.
    VACUUM cannot run in a transaction: this is after the sync's commit.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) readers")


def _write_problems(conn: Connection, folder: Path, problems: list[Problem]) -> None:
    """Replace the stored problems; a file of 100k rows may have thousands."""
    conn.execute(delete(reader_problems))
    places: dict[Path, str] = {}
    rows = []
    for order, p in enumerate(problems):
        path = places.get(p.path)
        if path is None:
            path = places[p.path] = stored_path(folder, p.path)
        rows.append((order, path, p.line, p.severity, p.message))
    if rows:
        executemany(
            conn, "INSERT INTO reader_problems (id, path, line, severity, message) VALUES (?, ?, ?, ?, ?)", rows
        )


def _upsert(conn: Connection, row: dict[str, Any]) -> None:
    """Insert or update a ``reader_files`` row: one statement, SQLite or PostgreSQL."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement: Any = insert(reader_files)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={c: statement.excluded[c] for c in row if c != "name"}
        ),
        row,
    )
