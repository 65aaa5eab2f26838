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


def merge(row: Row[Any] | dict[str, Any]) -> Reader:
    """The reader a row stands for: per field, the newer of the file and the reader's own choice."""
    r = row if isinstance(row, dict) else row._mapping
    own_at, file_at = aware(r["own_at"]), aware(r["file_at"])
    in_files = r["file_status"] is not None
    own_newer = own_at is not None and (not in_files or file_at is None or own_at >= file_at)

    def pick(field: str, default: Any) -> Any:
        own, theirs = r[f"own_{field}"], r[f"file_{field}"]
        if own is not None and (own_newer or not in_files):
            return own
        return theirs if in_files else default

    status = pick("status", "active")
    if r["own_status"] in STICKY and own_at is not None:
        status = r["own_status"]
    return Reader(
        key=r["key"],
        email=r["email"],
        name=pick("name", "") or "",
        topics=topics_of(pick("topics", ALL)),
        status=cast(Status, status),
        in_files=in_files,
        chosen_at=own_at,
    )
