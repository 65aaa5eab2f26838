"""The readers' file layers written from the subscriber files' rows, a chunk at a time (``audience.sync``'s writer).

The rows come one at a time (``subscribers.subscriber_files``) and are
written ``CHUNK`` readers at a time, so a sync holds a chunk, never the whole
list. For each chunk the stored rows of its addresses are read by key and
compared: only a new or changed reader is written, with its token hash; one
that only moved (another line or file) keeps its ``file_at``; an unchanged
one is only marked.

The mark is the sync's number (``readers.file_sync``), one more than any
row's. An address whose row already has it came earlier in the files (a
duplicate, reported as ``read_subscribers`` reports it), and the rows without
it at the end are the readers gone from the files, handled in SQL: neither
needs every address held in memory (a set of a million is ~100 MB).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection

from newsletter.audience.choices import topics_text
from newsletter.audience.subscribers import Subscriber, duplicate
from newsletter.db.schema import readers
from newsletter.errors import Problem
from newsletter.support import collector

# Readers written at a time: a sync's memory stays that of a chunk however long the files are.
CHUNK = 2000
# Keys in one IN list: under SQLite's oldest limit of 999 parameters a statement.
IN_LIST = 500


def now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _param_time(conn: Connection, value: datetime) -> object:
    """A time as the driver takes it: SQLite stores SQLAlchemy's text form (UTC), PostgreSQL the datetime."""
    if conn.dialect.name == "sqlite":
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def stored_path(folder: Path, path: Path) -> str:
    return (path.relative_to(folder.parent) if path.is_relative_to(folder.parent) else path).as_posix()


def executemany(conn: Connection, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Straight through the driver: SQLAlchemy's per-row parameter processing made 100k rows take seconds."""
    conn.exec_driver_sql(sql if conn.dialect.paramstyle == "qmark" else sql.replace("?", "%s"), rows)


def _key_lists(conn: Connection, keys: list[str]) -> Iterator[tuple[str, Sequence[object]]]:
    """``key IN`` these keys as SQL and its parameters: a few hundred at a time; one array on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        if keys:
            yield "key = ANY(%s)", (keys,)
        return
    for start in range(0, len(keys), IN_LIST):
        part = keys[start : start + IN_LIST]
        yield f"key IN ({', '.join('?' * len(part))})", tuple(part)


class FileLayers:
    """One sync's writing of the readers' file layers, and the problems found on the way."""

    def __init__(self, conn: Connection, folder: Path, mtimes: dict[str, datetime], token: Callable[[str], str]):
        self.conn = conn
        self.folder = folder
        self.mtimes = mtimes
        self.token = token
        self.at = now()
        self.updated_at = _param_time(conn, self.at)
        self.number = conn.execute(select(func.coalesce(func.max(readers.c.file_sync), 0))).scalar_one() + 1
        # Per file, not per reader: path arithmetic and time formatting were most of a first sync.
        self.places: dict[Path, tuple[str, object]] = {}
        self.paths: dict[str, Path] = {}  # back from a stored path, to name where a duplicate was first
        self.problems: list[Problem] = []

    @collector.paused()
    def write(self, rows: Iterable[Subscriber | Problem]) -> list[Problem]:
        """Write the file layers of ``rows`` (readers and problems, in file order); every problem, duplicates too."""
        chunk: list[Subscriber | Problem] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK:
                self._write_chunk(chunk)
                chunk = []
        self._write_chunk(chunk)
        self._clear_gone()
        return self.problems

    def _place(self, path: Path) -> tuple[str, object]:
        place = self.places.get(path)
        if place is None:
            stored = stored_path(self.folder, path)
            self.paths[stored] = path
            place = self.places[path] = (stored, _param_time(self.conn, self.mtimes.get(str(path), self.at)))
        return place

    def _write_chunk(self, chunk: list[Subscriber | Problem]) -> None:
        stored = self._stored([s.email.lower() for s in chunk if isinstance(s, Subscriber)])
        number, updated_at, problems, places = self.number, self.updated_at, self.problems, self.places
        here: dict[str, Subscriber] = {}
        changed: list[tuple[object, ...]] = []
        moved: list[tuple[object, ...]] = []
        same: list[str] = []
        for s in chunk:
            if isinstance(s, Problem):
                problems.append(s)
                continue
            key = s.email.lower()  # Subscriber.key, without a property call a reader
            old = stored.get(key)
            if old is not None and old[7] == number:  # found in an earlier chunk
                problems.append(duplicate(s, self.paths[old[5]], old[6]))
                continue
            earlier = here.get(key)
            if earlier is not None:
                problems.append(duplicate(s, earlier.path, earlier.line))
                continue
            here[key] = s
            where, mtime = places.get(s.path) or self._place(s.path)
            topics = topics_text(s.topics)
            if old is not None and old[1:5] == (s.email, s.name, topics, s.status):
                if old[5] == where and old[6] == s.line:
                    same.append(key)
                else:  # moved, not changed: file_at kept
                    moved.append((where, s.line, updated_at, updated_at, number, key))
                continue
            token = token_hash(self.token(s.email))
            changed.append(
                (key, s.email, token, s.name, topics, s.status, where, s.line, mtime, number, self.updated_at)
            )
        if changed:
            _upsert_files(self.conn, changed)
        if moved:
            executemany(
                self.conn,
                "UPDATE readers SET file_path = ?, file_line = ?, file_at = coalesce(file_at, ?), updated_at = ?, "
                "file_sync = ? WHERE key = ?",
                moved,
            )
        for keys, params in _key_lists(self.conn, same):
            self.conn.exec_driver_sql(f"UPDATE readers SET file_sync = {number:d} WHERE {keys}", params)

    def _stored(self, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        """The rows of these keys as stored: key, email, the file layer's values and place, file_sync."""
        found: dict[str, tuple[Any, ...]] = {}
        # The driver's own cursor: a million SQLAlchemy rows cost seconds more.
        cursor = self.conn.connection.cursor()
        try:
            for where, params in _key_lists(self.conn, keys):
                cursor.execute(
                    "SELECT key, email, file_name, file_topics, file_status, file_path, file_line, file_sync "
                    f"FROM readers WHERE {where}",
                    params,
                )
                found.update((row[0], row) for row in cursor.fetchall())
        finally:
            cursor.close()
        return found

    def _clear_gone(self) -> None:
        """The readers this sync did not find: their own layer kept, their file layer cleared."""
        c = readers.c
        gone = and_(c.file_status.is_not(None), or_(c.file_sync.is_(None), c.file_sync != self.number))
        # Off the files: the reader stays only if they chose something themselves, keeping
        # what the file said where they chose nothing (a reader who only changed topics keeps their name).
        self.conn.execute(delete(readers).where(gone, c.own_at.is_(None)))
        self.conn.execute(
            update(readers)
            .where(gone)
            .values(
                own_name=func.coalesce(c.own_name, c.file_name),
                own_topics=func.coalesce(c.own_topics, c.file_topics),
                own_status=func.coalesce(c.own_status, c.file_status),
                file_name=None,
                file_topics=None,
                file_status=None,
                file_path=None,
                file_line=None,
                file_at=None,
                file_sync=None,
                updated_at=self.at,
            )
        )


def _upsert_files(conn: Connection, rows: list[tuple[object, ...]]) -> None:
    """Write new or changed file layers: a first sync writes every reader."""
    executemany(
        conn,
        "INSERT INTO readers (key, email, token_hash, file_name, file_topics, file_status, file_path, file_line, "
        "file_at, file_sync, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
        "email = excluded.email, token_hash = excluded.token_hash, file_name = excluded.file_name, "
        "file_topics = excluded.file_topics, file_status = excluded.file_status, file_path = excluded.file_path, "
        "file_line = excluded.file_line, file_at = excluded.file_at, file_sync = excluded.file_sync, "
        "updated_at = excluded.updated_at",
        rows,
    )
