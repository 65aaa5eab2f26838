"""Readers in the database: ``subscribers/*.csv`` synced in, each reader's own choices kept beside.

Each reader has one row in ``readers`` with two layers:

- the **file** layer: their row of the subscriber files as last synced, and
  ``file_at``, when that row last changed (its file's modification time);
- the **own** layer: what the reader chose themselves (a confirmed sign-up,
  a topic change, an unsubscribe, or a provider event such as a bounce) and
  ``own_at``, when.

Merged by ``choices.merged``, in SQL: per field, the newer of the two wins; an
unsubscribe only the reader undoes. Readers who signed up online have no
file layer at all.

Syncing costs one small query when the files are unchanged (their sizes and
modification times are kept in ``reader_files``); the CSV is still parsed by
``read_subscribers`` on every load, as before, so its problems are reported
the same way. Only readers with an own layer are read back from the
database: on a 100k-reader list a handful of rows, not a second copy.

A reader's link token (``links.Links.token``, an HMAC of the address) is
passed in as a function, so this layer needs no secret of its own; the table
keeps its SHA-256 to find a reader by token.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, delete, func, select, update
from sqlalchemy.engine import Connection, Engine

from newsletter.audience.choices import (
    ONLINE,
    Merged,
    Override,
    Reader,
    Topics,
    aware,
    merged,
    reader_columns,
    reader_of,
    topics_text,
)
from newsletter.audience.personalise import Tally
from newsletter.audience.subscribers import Status, Subscriber, SubscriberList, read_subscribers
from newsletter.content.taxonomy import Taxonomy
from newsletter.db.schema import reader_files, readers, suppressions
from newsletter.support import collector

FILES = "files"  # reader_files row of the subscriber files' signature
TOKEN_KEY = "token"  # reader_files row of the link key's fingerprint
_FILE_COLUMNS = ("key", "email", "file_name", "file_topics", "file_status", "file_path", "file_line", "file_at")
_UNSET: Any = object()
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


class ReaderStore:
    """The ``readers`` table: synced from the files, changed by readers, merged for sending."""

    def __init__(self, engine: Engine, token: Callable[[str], str]) -> None:
        self.engine = engine
        self._token = token
        # Reads take no lock. The database's engine starts every SQLite transaction
        # with BEGIN IMMEDIATE (the write lock, for the ledger's claims), so a page
        # that only looks a reader up would queue behind every save; in WAL mode a
        # plain connection reads a snapshot beside the writer instead.
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            self.reads = create_engine(engine.url, connect_args={"timeout": 60.0})
        else:
            self.reads = engine

    def close(self) -> None:
        """Close the connections of our own (the database's engine is its opener's to close)."""
        if self.reads is not self.engine:
            self.reads.dispose()

    # -- the files ------------------------------------------------------------------

    @staticmethod
    def signature(folder: Path) -> tuple[str, dict[str, datetime]]:
        """The files' names, sizes and mtimes as one string, and each file's mtime."""
        parts, mtimes = [], {}
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            try:
                stat = path.stat()
            except OSError:
                continue
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
            mtimes[str(path)] = datetime.fromtimestamp(stat.st_mtime, UTC)
        return "/".join(parts), mtimes

    def _fingerprint(self) -> str:
        # Changes exactly when NEWSLETTER_SECRET does: every token_hash must then be made again.
        return token_hash(self._token("\x00fingerprint"))

    def refresh(self, folder: Path, taxonomy: Taxonomy, found: SubscriberList | None = None) -> bool:
        """Bring the file layer up to date with the files; False (one query) when nothing changed."""
        signature, mtimes = self.signature(folder)
        fingerprint = self._fingerprint()
        with self.reads.connect() as conn:
            stored = dict(conn.execute(select(reader_files.c.name, reader_files.c.signature)).all())
        if stored.get(FILES) == signature and stored.get(TOKEN_KEY) == fingerprint:
            return False
        if found is None:
            found = read_subscribers(folder, taxonomy)
        with WRITES, self.engine.begin() as conn:
            # Another process may have synced while we parsed: look again under the write lock.
            stored = dict(conn.execute(select(reader_files.c.name, reader_files.c.signature)).all())
            if stored.get(TOKEN_KEY) != fingerprint:
                self._rehash(conn)
            if stored.get(FILES) != signature:
                self._write_files(conn, folder, found.subscribers, mtimes)
            for name, value in ((FILES, signature), (TOKEN_KEY, fingerprint)):
                self._upsert(conn, reader_files, {"name": name, "signature": value, "synced_at": now()}, ["name"])
        return True

    @collector.paused()
    def _write_files(
        self, conn: Connection, folder: Path, subscribers: list[Subscriber], mtimes: dict[str, datetime]
    ) -> None:
        stored = {
            r.key: r
            for r in conn.execute(
                select(*(readers.c[c] for c in _FILE_COLUMNS)).where(readers.c.file_status.is_not(None))
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
                rel = s.path.relative_to(folder.parent) if s.path.is_relative_to(folder.parent) else s.path
                place = places[s.path] = (rel.as_posix(), _param_time(conn, mtimes.get(str(s.path), at)))
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
            self._upsert_files(conn, rows)
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

    @staticmethod
    def _upsert_files(conn: Connection, rows: list[tuple[object, ...]]) -> None:
        """Write file layers straight through the driver's executemany.

        A first sync writes every reader: SQLAlchemy's per-row parameter
        processing made that 4 s for 100k readers, the driver takes a fraction.
        """
        sql = (
            "INSERT INTO readers (key, email, token_hash, file_name, file_topics, file_status, file_path, file_line, "
            "file_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "email = excluded.email, token_hash = excluded.token_hash, file_name = excluded.file_name, "
            "file_topics = excluded.file_topics, file_status = excluded.file_status, file_path = excluded.file_path, "
            "file_line = excluded.file_line, file_at = excluded.file_at, updated_at = excluded.updated_at"
        )
        if conn.dialect.paramstyle != "qmark":
            sql = sql.replace("?", "%s")
        conn.exec_driver_sql(sql, rows)

    def _rehash(self, conn: Connection) -> None:
        rows = [
            {"k": key, "h": token_hash(self._token(email))}
            for key, email in conn.execute(select(readers.c.key, readers.c.email))
        ]
        if rows:
            conn.execute(update(readers).where(readers.c.key == bindparam("k")).values(token_hash=bindparam("h")), rows)

    def _upsert(
        self,
        conn: Connection,
        table: Any,
        rows: dict[str, Any] | list[dict[str, Any]],
        keys: list[str],
        keep: Iterable[str] = (),
    ) -> None:
        """Insert, or update every column but ``keys`` and ``keep``: one statement, SQLite or PostgreSQL."""
        from sqlalchemy.dialects import postgresql, sqlite

        many = rows if isinstance(rows, list) else [rows]
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement: Any = insert(table)
        columns = [c for c in many[0] if c not in keys and c not in set(keep)]
        conn.execute(
            statement.on_conflict_do_update(index_elements=keys, set_={c: statement.excluded[c] for c in columns}),
            many,
        )

    # -- loading, merged ------------------------------------------------------------------

    @collector.paused()
    def load(self, folder: Path, taxonomy: Taxonomy) -> Merged:
        """Every reader, merged (the files synced in first), the files' problems, and the overridden rows."""
        found = read_subscribers(folder, taxonomy)
        self.refresh(folder, taxonomy, found)
        with self.reads.connect() as conn:
            own = conn.execute(select(*reader_columns(readers)).where(readers.c.own_at.is_not(None))).all()
        if not own:
            return Merged(found.subscribers, found.problems, [])
        chosen = {r.key: reader_of(r) for r in own}
        subscribers: list[Subscriber] = []
        overrides: list[Override] = []
        for s in found.subscribers:
            reader = chosen.pop(s.key, None)
            if reader is None:
                subscribers.append(s)
                continue
            merged = replace(s, name=reader.name, topics=reader.topics, status=reader.status)
            fields = tuple(f for f in ("name", "topics", "status") if getattr(merged, f) != getattr(s, f))
            if fields and reader.chosen_at is not None:
                overrides.append(Override(s.email, s.path, s.line, fields, reader.chosen_at))
            subscribers.append(merged)
        for reader in chosen.values():  # signed up online, or off the files now
            subscribers.append(Subscriber(reader.email, reader.name, reader.topics, reader.status, ONLINE, 0))
        return Merged(subscribers, found.problems, overrides)

    def tally(self) -> list[Tally]:
        """Readers counted by merged topic list, status and suppression: the plan of a send, grouped by the database."""
        rule = merged(readers)
        columns = (rule["topics"], rule["status"], suppressions.c.reason)
        query = (
            select(*columns, func.count())
            .select_from(readers.outerjoin(suppressions, suppressions.c.email == readers.c.key))
            .group_by(*columns)
        )
        with self.reads.connect() as conn:
            return [Tally(*row) for row in conn.execute(query)]

    def find(self, token: str) -> Reader | None:
        """The reader whose link token this is (the caller compares it in constant time), or None."""
        with self.reads.connect() as conn:
            row = conn.execute(
                select(*reader_columns(readers)).where(readers.c.token_hash == token_hash(token))
            ).first()
        return reader_of(row) if row is not None else None

    def get(self, email: str) -> Reader | None:
        with self.reads.connect() as conn:
            row = conn.execute(select(*reader_columns(readers)).where(readers.c.key == email.lower())).first()
        return reader_of(row) if row is not None else None

    # -- a reader's own choices -----------------------------------------------------

    def choose(
        self,
        email: str,
        *,
        name: str | None = _UNSET,
        topics: Topics = _UNSET,
        status: Status | None = None,
        at: datetime | None = None,
        known_only: bool = False,
    ) -> Reader | None:
        """Record the reader's own choice (fields left out keep their value); the reader as merged after.

        ``at`` is when it was made (now by default); a dated choice older than
        the reader's last one is not applied (a late or replayed provider
        event), and None is returned, as for an unknown reader with ``known_only``.
        ``known_only``: do nothing for an address that is not a reader.
        """
        late_is_stale = at is not None  # only a dated event can come late; the reader's own action is now
        at = at or now()
        key = email.lower()
        with WRITES, self.engine.begin() as conn:
            query = select(readers.c.own_at).where(readers.c.key == key)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None and known_only:
                return None
            last = aware(row.own_at) if row is not None else None
            if late_is_stale and last is not None and last > at:
                return None
            values: dict[str, Any] = {"own_at": at, "updated_at": now()}
            if name is not _UNSET:
                values["own_name"] = name
            if topics is not _UNSET:
                values["own_topics"] = topics_text(topics)
            if status is not None:
                values["own_status"] = status
            if row is None:
                values.update(key=key, email=email, token_hash=token_hash(self._token(email)))
                conn.execute(readers.insert().values(**values))
            else:
                conn.execute(update(readers).where(readers.c.key == key).values(**values))
            return reader_of(conn.execute(select(*reader_columns(readers)).where(readers.c.key == key)).one())
