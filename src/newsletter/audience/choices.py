"""A reader's own choices and the subscriber files' rows, merged: the rule, and what it gives.

Per field the newer of the two wins: a reader's choice (with its time) over
their row as it stood, an author's later edit of that row (its file's
modification time) over the choice. An unsubscribe is the exception: only
the reader undoes it, by signing up again; no file does. ``store`` keeps the
two layers in the ``readers`` table and applies this rule to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, case, func, or_
from sqlalchemy.engine import Row

from newsletter.audience.subscribers import Status, Subscriber, SubscriberList
from newsletter.content.taxonomy import ALL

Topics = frozenset[str] | None  # None: every topic
# Only the reader undoes this one, by signing up again.
STICKY: frozenset[str] = frozenset({"unsubscribed"})
# Where a reader who signed up online is said to come from (Subscriber.path).
ONLINE = Path("(signed up online)")


def topics_text(topics: Topics) -> str:
    """How a topic choice is stored (and exported): ``all`` or slugs joined by ``;``."""
    return ALL if topics is None else ";".join(sorted(topics))


def topics_of(text: str | None) -> Topics:
    if text is None or text == ALL:
        return None
    return frozenset(t for t in text.split(";") if t)


def aware(value: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes (UTC as written); PostgreSQL aware ones.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class Reader:
    """One reader as merged: what the next send uses."""

    key: str
    email: str
    name: str
    topics: Topics
    status: Status
    in_files: bool
    chosen_at: datetime | None  # when they last chose something themselves


@dataclass(frozen=True)
class Override:
    """A subscriber-file row that the reader's own, newer choice overrides."""

    email: str
    path: Path
    line: int
    fields: tuple[str, ...]  # "name", "topics", "status"
    chosen_at: datetime


@dataclass
class Merged:
    """Every reader as merged, the problems with the files, and the rows readers' choices override."""

    subscribers: list[Subscriber]
    problems: list[Any]
    overrides: list[Override]

    @property
    def active(self) -> list[Subscriber]:
        return [s for s in self.subscribers if s.status == "active"]

    def as_list(self) -> SubscriberList:
        return SubscriberList(self.subscribers, self.problems)


def merged(table: Table) -> dict[str, ColumnElement[Any]]:
    """The rule, as columns of the ``readers`` table: each reader's name, topics and status as merged.

    In SQL, so that the database merges, counts and streams a million readers
    (``store.tally``, ``delivery.readers``) without a row reaching Python first.
    Per field: the reader's own value where they chose one at or after the
    file's row last changed (or they are not in the files); else the file's.
    ``unsubscribed`` chosen by the reader stays whatever the file says.
    Times compare as stored: on SQLite both are UTC text of one format.
    """
    c = table.c
    in_files = c.file_status.is_not(None)
    own_newer = and_(c.own_at.is_not(None), or_(~in_files, c.file_at.is_(None), c.own_at >= c.file_at))

    def pick(field: str, default: str) -> ColumnElement[Any]:
        own, theirs = c[f"own_{field}"], c[f"file_{field}"]
        return case((and_(own.is_not(None), or_(own_newer, ~in_files)), own), (in_files, theirs), else_=default)

    sticky = and_(or_(*(c.own_status == status for status in sorted(STICKY))), c.own_at.is_not(None))
    return {
        "name": func.coalesce(pick("name", ""), ""),
        "topics": func.coalesce(pick("topics", ALL), ALL),
        "status": case((sticky, c.own_status), else_=pick("status", "active")),
    }


def reader_columns(table: Table) -> list[ColumnElement[Any]]:
    """What ``reader_of`` reads: a reader as merged, with where their choice came from."""
    c = table.c
    rule = merged(table)
    return [
        c.key,
        c.email,
        rule["name"].label("name"),
        rule["topics"].label("topics"),
        rule["status"].label("status"),
        c.file_status.is_not(None).label("in_files"),
        c.own_at,
    ]


def reader_of(row: Row[Any]) -> Reader:
    """The Reader of a row selected with ``reader_columns``."""
    return Reader(
        key=row.key,
        email=row.email,
        name=row.name,
        topics=topics_of(row.topics),
        status=cast(Status, row.status),
        in_files=bool(row.in_files),
        chosen_at=aware(row.own_at),
    )
