"""The subscriber files synced into the database: each reader's file layer, and the files' problems.

Parsing ``subscribers/*.csv`` validates every address, ~0.7 s per 100k
readers: too slow to repeat in every command, and a send that streams a
million readers from the database must not. So a sync keeps the files'
names, sizes and modification times (their signature) in ``reader_files``,
and the problems ``read_subscribers`` found (bad addresses, malformed rows,
unknown topics) in ``reader_problems``. While the signature is unchanged a
sync reads no file: one query says so, one more gives the problems. When it
changed, the files are parsed, and the readers' file layer, the problems and
the new signature are written in one transaction: nobody reads half a sync.

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

import hashlib
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection, Engine

from newsletter.audience.choices import aware, topics_text
from newsletter.audience.subscribers import Subscriber, SubscriberList, read_subscribers
from newsletter.content.taxonomy import Taxonomy
from newsletter.db.schema import reader_files, reader_problems, readers
from newsletter.errors import Problem
from newsletter.support import collector

FILES = "files"  # reader_files row of the subscriber files' signature
TOKEN_KEY = "token"  # reader_files row of the link key's fingerprint
FILE_COLUMNS = ("key", "email", "file_name", "file_topics", "file_status", "file_path", "file_line", "file_at")
# One writer at a time in this process. SQLite lets one transaction write at
# a time anyway, and a thread that finds the lock taken sleeps in SQLite's busy
# handler, up to 100 ms a try: under 200 concurrent saves that sleeping was
# most of the time. Threads queued on this lock wake the moment it is free.
WRITES = threading.Lock()


def now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _param_time(conn: Connection, value: datetime) -> object:
    """A time as the driver takes it: SQLite stores SQLAlchemy's text form (UTC), PostgreSQL the datetime."""
    if conn.dialect.name == "sqlite":
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _stored_path(folder: Path, path: Path) -> str:
    return (path.relative_to(folder.parent) if path.is_relative_to(folder.parent) else path).as_posix()


def _executemany(conn: Connection, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Straight through the driver: SQLAlchemy's per-row parameter processing made 100k rows take seconds."""
    conn.exec_driver_sql(sql if conn.dialect.paramstyle == "qmark" else sql.replace("?", "%s"), rows)


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
        return self._update(folder, taxonomy, found) is not None

    def sync(self, folder: Path, taxonomy: Taxonomy) -> list[Problem]:
        """Bring the file layer up to date, and the files' problems: as stored while the files are unchanged."""
        found = self._update(folder, taxonomy)
        return self.problems(folder) if found is None else found.problems

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

    def _update(self, folder: Path, taxonomy: Taxonomy, found: SubscriberList | None = None) -> SubscriberList | None:
        """The files as parsed (``found``, or read now) once synced; None (one query) when nothing changed."""
        # Taken before parsing here: a file changed in between leaves a signature that is synced again next time.
        signature, mtimes = self.signature(folder)
        fingerprint = self.fingerprint()
        with self.reads.connect() as conn:
            stored = _signatures(conn)
        if stored.get(FILES) == signature and stored.get(TOKEN_KEY) == fingerprint:
            return None
        if found is None:
            found = read_subscribers(folder, taxonomy)
        with WRITES, self.engine.begin() as conn:
            # Another process may have synced while we parsed: look again under the write lock.
            stored = _signatures(conn)
            if stored.get(TOKEN_KEY) != fingerprint:
                self._rehash(conn)
            if stored.get(FILES) != signature:
                self._write_files(conn, folder, found.subscribers, mtimes)
                _write_problems(conn, folder, found.problems)
                if conn.dialect.name == "postgresql":
                    # Statistics now, not when autovacuum gets to it: a send that
                    # follows streams the readers by key, a chunk at a time, and
                    # a planner that takes the table for empty scans it whole for each.
                    conn.exec_driver_sql("ANALYZE readers")
            for name, value in ((FILES, signature), (TOKEN_KEY, fingerprint)):
                _upsert(conn, {"name": name, "signature": value, "synced_at": now()})
        return found

    @collector.paused()
    def _write_files(
        self, conn: Connection, folder: Path, subscribers: list[Subscriber], mtimes: dict[str, datetime]
    ) -> None:
        stored = {
            r.key: r
            for r in conn.execute(
                select(*(readers.c[c] for c in FILE_COLUMNS)).where(readers.c.file_status.is_not(None))
            )
        }
        at = now()
        # Per file, not per reader: path arithmetic and time formatting were most of a first sync.
        places: dict[Path, tuple[str, object]] = {}
        updated_at = _param_time(conn, at)
        rows: list[tuple[object, ...]] = []
        for s in subscribers:
            place = places.get(s.path)
            if place is None:
                place = places[s.path] = (
                    _stored_path(folder, s.path),
                    _param_time(conn, mtimes.get(str(s.path), at)),
                )
            where, mtime = place
            values = (s.email, s.name, topics_text(s.topics), s.status)
            old = stored.pop(s.key, None)
            if old is not None and (old.email, old.file_name, old.file_topics, old.file_status) == values:
                if (old.file_path, old.file_line) == (where, s.line):
                    continue
                file_at = _param_time(conn, aware(old.file_at) or at)  # moved, not changed
            else:
                file_at = mtime
            token = token_hash(self._token(s.email))
            rows.append((s.key, s.email, token, s.name, values[2], s.status, where, s.line, file_at, updated_at))
        if rows:
            _upsert_files(conn, rows)
        gone = list(stored)
        for start in range(0, len(gone), 500):
            chunk = gone[start : start + 500]
            # Off the files: the reader stays only if they chose something themselves, keeping
            # what the file said where they chose nothing (a reader who only changed topics keeps their name).
            conn.execute(
                update(readers)
                .where(readers.c.key.in_(chunk))
                .values(
                    own_name=func.coalesce(readers.c.own_name, readers.c.file_name),
                    own_topics=func.coalesce(readers.c.own_topics, readers.c.file_topics),
                    own_status=func.coalesce(readers.c.own_status, readers.c.file_status),
                    file_name=None,
                    file_topics=None,
                    file_status=None,
                    file_path=None,
                    file_line=None,
                    file_at=None,
                    updated_at=at,
                )
            )
            conn.execute(delete(readers).where(readers.c.key.in_(chunk), readers.c.own_at.is_(None)))

    def _rehash(self, conn: Connection) -> None:
        rows = [
            {"k": key, "h": token_hash(self._token(email))}
            for key, email in conn.execute(select(readers.c.key, readers.c.email))
        ]
        if rows:
            conn.execute(update(readers).where(readers.c.key == bindparam("k")).values(token_hash=bindparam("h")), rows)


def _upsert_files(conn: Connection, rows: list[tuple[object, ...]]) -> None:
    """Write file layers: a first sync writes every reader."""
    _executemany(
        conn,
        "INSERT INTO readers (key, email, token_hash, file_name, file_topics, file_status, file_path, file_line, "
        "file_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
        "email = excluded.email, token_hash = excluded.token_hash, file_name = excluded.file_name, "
        "file_topics = excluded.file_topics, file_status = excluded.file_status, file_path = excluded.file_path, "
        "file_line = excluded.file_line, file_at = excluded.file_at, updated_at = excluded.updated_at",
        rows,
    )


def _write_problems(conn: Connection, folder: Path, problems: list[Problem]) -> None:
    """Replace the stored problems; a file of 100k rows may have thousands."""
    conn.execute(delete(reader_problems))
    places: dict[Path, str] = {}
    rows = []
    for order, p in enumerate(problems):
        path = places.get(p.path)
        if path is None:
            path = places[p.path] = _stored_path(folder, p.path)
        rows.append((order, path, p.line, p.severity, p.message))
    if rows:
        _executemany(
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
