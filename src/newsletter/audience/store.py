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

Syncing (``sync``) costs two small queries when the files are unchanged
(their sizes and modification times are kept in ``reader_files``, their
problems in ``reader_problems``): addresses are validated once, when the
files change, not by every send. ``load`` (``subscribers check``, ``list``,
``export``) still parses the files, to name each row; only readers with an
own layer are read back from the database there.

A reader's link token (``links.Links.token``, an HMAC of the address) is
passed in as a function, so this layer needs no secret of its own; the table
keeps its SHA-256 to find a reader by token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

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
from newsletter.audience.file_layer import now, token_hash
from newsletter.audience.personalise import Tally
from newsletter.audience.subscribers import Status, Subscriber, SubscriberList, read_subscribers
from newsletter.audience.sync import WRITES, FileSync
from newsletter.content.taxonomy import Taxonomy
from newsletter.db import snapshot_reads
from newsletter.db.schema import readers, suppressions
from newsletter.errors import Problem
from newsletter.support import collector

# WRITES: the web app's state takes the same lock, through this module.
__all__ = ["WRITES", "ReaderStore"]
_UNSET: Any = object()


class ReaderStore:
    """The ``readers`` table: synced from the files, changed by readers, merged for sending."""

    def __init__(self, engine: Engine, token: Callable[[str], str]) -> None:
        self.engine = engine
        self._token = token
        self.reads = snapshot_reads(engine)  # a page that only looks a reader up queues behind no save
        self.files = FileSync(engine, self.reads, token)

    def close(self) -> None:
        """Close the connections of our own (the database's engine is its opener's to close)."""
        if self.reads is not self.engine:
            self.reads.dispose()

    # -- the files: newsletter.audience.sync -------------------------------------------

    def refresh(self, folder: Path, taxonomy: Taxonomy, found: SubscriberList | None = None) -> bool:
        """Bring the file layer up to date with the files (``found``: as already parsed); False when unchanged."""
        return self.files.refresh(folder, taxonomy, found)

    def sync(self, folder: Path, taxonomy: Taxonomy) -> list[Problem]:
        """Bring the file layer up to date, and the files' problems: no file is parsed while they are unchanged."""
        return self.files.sync(folder, taxonomy)

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
