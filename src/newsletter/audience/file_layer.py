"""The readers' file layers written from the subscriber files' rows, a chunk at a time (``audience.sync``'s writer).

The rows come one at a time (``subscribers.subscriber_files``) and are
written ``CHUNK`` readers at a time, so a sync holds a chunk, never the whole
list (a set of a million addresses alone is ~100 MB). For each chunk the
stored rows of its addresses are read by key and compared: only a new or
changed reader is written, with its token hash; one that only moved (another
line or file) keeps its ``file_at``; an unchanged one is not written at all.

Each address found is noted in ``SEEN``, a table of the transaction's own:
an address already there came earlier in the files (a duplicate, reported as
``read_subscribers`` reports it), and the readers with a file layer but no
note at the end are those gone from the files, handled in SQL. Noting them
there rather than marking each row of ``readers``: on PostgreSQL rewriting a
million unchanged rows, and their index entries, took 16 s; the notes take 2.

A first sync (no reader in the files yet) has nothing to compare, and no
one can be gone: it reads no stored row and notes nothing; the upsert leaves
a row this sync already wrote as it is, and a duplicate is a row it skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.sql import column, table

from newsletter.audience.choices import topics_text
from newsletter.audience.subscribers import Subscriber, duplicate
from newsletter.db.schema import readers
from newsletter.errors import Problem
from newsletter.support import collector

# Readers written at a time: a sync's memory stays that of a chunk however long the files are.
CHUNK = 2000
# A file layer as written.
FILE_COLUMNS = "key, email, token_hash, file_name, file_topics, file_status, file_path, file_line, file_at, updated_at"
# The transaction's own tables: the addresses found so far, and (PostgreSQL) a chunk copied in.
SEEN = "sync_seen"
SCRATCH = "sync_rows"
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


def executemany(conn: Connection, sql: str, rows: Sequence[tuple[object, ...]]) -> CursorResult[Any]:
    """Straight through the driver: SQLAlchemy's per-row parameter processing made 100k rows take seconds."""
    return conn.exec_driver_sql(sql if conn.dialect.paramstyle == "qmark" else sql.replace("?", "%s"), rows)


def _key_lists(conn: Connection, keys: list[str], name: str = "key") -> Iterator[tuple[str, Sequence[object]]]:
    """``name IN`` these keys as SQL and its parameters: a few hundred at a time; one array on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        if keys:
            yield f"{name} = ANY(%s)", (keys,)
        return
    for start in range(0, len(keys), IN_LIST):
        part = keys[start : start + IN_LIST]
        yield f"{name} IN ({', '.join('?' * len(part))})", tuple(part)


class FileLayers:
    """One sync's writing of the readers' file layers, and the problems found on the way."""

    def __init__(self, conn: Connection, folder: Path, mtimes: dict[str, datetime], token: Callable[[str], str]):
        self.conn = conn
        self.folder = folder
        self.mtimes = mtimes
        self.token = token
        self.at = now()
        self.updated_at = _param_time(conn, self.at)
        self.postgres = conn.dialect.name == "postgresql"
        in_files = select(readers.c.key).where(readers.c.file_status.is_not(None)).limit(1)
        self.fresh = conn.execute(in_files).first() is None
        self.scratch = False  # SCRATCH made in this transaction
        self.noted = 0  # addresses in SEEN
        # Per file, not per reader: path arithmetic and time formatting were most of a first sync.
        self.places: dict[Path, tuple[str, object]] = {}
        self.paths: dict[str, Path] = {}  # back from a stored path, to name where a duplicate was first
        self.problems: list[Problem] = []

    @collector.paused()
    def write(self, rows: Iterable[Subscriber | Problem]) -> list[Problem]:
        """Write the file layers of ``rows`` (readers and problems, in file order); every problem, duplicates too."""
        if not self.fresh:
            self._make_seen()
        chunk: list[Subscriber | Problem] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK:
                self._write_chunk(chunk)
                chunk = []
        self._write_chunk(chunk)
        if not self.fresh:
            self._clear_gone()
            if not self.postgres:  # PostgreSQL drops it at commit
                self.conn.exec_driver_sql(f"DROP TABLE temp.{SEEN}")
        return self.problems

    def _place(self, path: Path) -> tuple[str, object]:
        place = self.places.get(path)
        if place is None:
            stored = stored_path(self.folder, path)
            self.paths[stored] = path
            place = self.places[path] = (stored, _param_time(self.conn, self.mtimes.get(str(path), self.at)))
        return place

    def _write_chunk(self, chunk: list[Subscriber | Problem]) -> None:
        stored = {} if self.fresh else self._stored([s.email.lower() for s in chunk if isinstance(s, Subscriber)])
        updated_at, places = self.updated_at, self.places
        # The chunk's problems in order; when fresh its readers too, since any may turn out a duplicate.
        found: list[Subscriber | Problem] = []
        here: dict[str, Subscriber] = {}
        changed: list[tuple[object, ...]] = []
        moved: list[tuple[str, int, str]] = []
        for s in chunk:
            if isinstance(s, Problem):
                found.append(s)
                continue
            key = s.email.lower()  # Subscriber.key, without a property call a reader
            old = stored.get(key)
            if old is not None and old[7] is not None:  # in SEEN: an earlier chunk had the address
                found.append(duplicate(s, self.paths[old[5]], old[6]))
                continue
            earlier = here.get(key)
            if earlier is not None:
                found.append(duplicate(s, earlier.path, earlier.line))
                continue
            here[key] = s
            where, mtime = places.get(s.path) or self._place(s.path)
            topics = topics_text(s.topics)
            if old is not None and old[1:5] == (s.email, s.name, topics, s.status):
                if old[5] != where or old[6] != s.line:  # moved, not changed: file_at kept
                    moved.append((where, s.line, key))
                continue
            if self.fresh:
                found.append(s)
            token = token_hash(self.token(s.email))
            changed.append((key, s.email, token, s.name, topics, s.status, where, s.line, mtime, updated_at))
        if changed and self._upsert(changed) < len(changed):
            found = self._skipped(found)
        if moved:
            self._move(moved)
        if not self.fresh and here:
            self._note([(key,) for key in here])
            self.noted += len(here)
        self.problems += (p for p in found if isinstance(p, Problem))

    def _stored(self, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        """The rows of these keys as stored: key, email, the file layer's values and place, and SEEN's key."""
        found: dict[str, tuple[Any, ...]] = {}
        # The driver's own cursor: a million SQLAlchemy rows cost seconds more.
        cursor = self.conn.connection.cursor()
        try:
            for where, params in _key_lists(self.conn, keys, "r.key"):
                cursor.execute(
                    "SELECT r.key, r.email, r.file_name, r.file_topics, r.file_status, r.file_path, r.file_line, "
                    f"s.key FROM readers r LEFT JOIN {SEEN} s ON s.key = r.key WHERE {where}",
                    params,
                )
                found.update((row[0], row) for row in cursor.fetchall())
        finally:
            cursor.close()
        return found

    def _skipped(self, found: list[Subscriber | Problem]) -> list[Subscriber | Problem]:
        """``found`` with a duplicate's problem for each reader whose row an earlier chunk wrote (rare)."""
        keys = [s.email.lower() for s in found if isinstance(s, Subscriber)]
        written: dict[str, tuple[str, int]] = {}
        for where, params in _key_lists(self.conn, keys):
            sql = f"SELECT key, file_path, file_line FROM readers WHERE {where}"
            written.update((key, (path, line)) for key, path, line in self.conn.exec_driver_sql(sql, params))
        out: list[Subscriber | Problem] = []
        for s in found:
            if isinstance(s, Subscriber):
                path, line = written[s.email.lower()]
                if (path, line) != (self.places[s.path][0], s.line):
                    out.append(duplicate(s, self.paths[path], line))
                    continue
            out.append(s)
        return out

    def _upsert(self, rows: list[tuple[object, ...]]) -> int:
        """Write new or changed file layers (a first sync writes every reader); how many were written."""
        upsert = "ON CONFLICT (key) DO UPDATE SET " + ", ".join(
            f"{c} = excluded.{c}" for c in FILE_COLUMNS.split(", ")[1:]
        )
        if self.fresh:  # a row in the files was written by this sync: an address's first row wins
            upsert += " WHERE readers.file_status IS NULL"
        if self.postgres:
            self._copy(FILE_COLUMNS, rows)
            sql = f"INSERT INTO readers ({FILE_COLUMNS}) SELECT {FILE_COLUMNS} FROM {SCRATCH} {upsert}"
            return self.conn.exec_driver_sql(sql).rowcount
        values = ", ".join("?" * len(rows[0]))
        return executemany(self.conn, f"INSERT INTO readers ({FILE_COLUMNS}) VALUES ({values}) {upsert}", rows).rowcount

    def _move(self, rows: list[tuple[str, int, str]]) -> None:
        """Give readers whose row only moved (path, line, key) their new place: file_at kept, where they had one."""
        marks = "file_at = coalesce(readers.file_at, {0}), updated_at = {0}"  # {0}: a placeholder
        if self.postgres:
            self._copy("file_path, file_line, key", rows)
            self.conn.exec_driver_sql(
                f"UPDATE readers SET file_path = m.file_path, file_line = m.file_line, {marks.format('%s')} "
                f"FROM {SCRATCH} m WHERE readers.key = m.key",
                (self.updated_at, self.updated_at),
            )
        else:
            at = self.updated_at
            executemany(
                self.conn,
                f"UPDATE readers SET file_path = ?, file_line = ?, {marks.format('?')} WHERE key = ?",
                [(path, line, at, at, key) for path, line, key in rows],
            )

    def _make_seen(self) -> None:
        if self.postgres:
            self.conn.exec_driver_sql(f"CREATE TEMP TABLE {SEEN} (key text PRIMARY KEY) ON COMMIT DROP")
        else:  # a temporary table lives as long as the connection, which goes back to the pool
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{SEEN}")
            self.conn.exec_driver_sql(f"CREATE TEMP TABLE {SEEN} (key TEXT PRIMARY KEY) WITHOUT ROWID")

    def _note(self, keys: list[tuple[str]]) -> None:
        """Note these addresses as found in the files."""
        if self.postgres:
            self._copy("key", keys, SEEN)
        else:
            executemany(self.conn, f"INSERT INTO {SEEN} (key) VALUES (?)", keys)

    def _copy(self, columns: str, rows: list[tuple[Any, ...]], into: str = SCRATCH) -> None:
        """PostgreSQL: ``rows`` (of ``columns``) into a table with COPY; into SCRATCH, emptied first.

        A COPY and one statement a chunk: executemany costs the server a
        statement a row, which made writing a million readers 18.5 s, not 14.6.
        """
        cursor: Any = self.conn.connection.cursor()  # psycopg's own: it has COPY
        try:
            if into == SCRATCH and self.scratch:
                cursor.execute(f"TRUNCATE {SCRATCH}")
            elif into == SCRATCH:  # readers' columns and types, no constraint: a chunk fills a few
                cursor.execute(f"CREATE TEMP TABLE {SCRATCH} ON COMMIT DROP AS SELECT * FROM readers WITH NO DATA")
                self.scratch = True
            with cursor.copy(f"COPY {into} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        finally:
            cursor.close()

    def _clear_gone(self) -> None:
        """The readers this sync did not find: their own layer kept, their file layer cleared."""
        c = readers.c
        # Each address noted has its row in the files: any more rows, and some readers left them. Most
        # syncs add or edit readers, and a count is cheaper than looking each row up in SEEN, twice.
        if self.conn.execute(select(func.count()).where(c.file_status.is_not(None))).scalar_one() == self.noted:
            return
        seen = table(SEEN, column("key"))
        gone = c.file_status.is_not(None) & ~exists().where(seen.c.key == c.key)
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
                updated_at=self.at,
            )
        )
