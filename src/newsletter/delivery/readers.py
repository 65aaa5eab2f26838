"""The readers' table as sends read it: with the link tokens the emails carry, and streamed with the ledger's rows.

A send never holds its readers in memory: ``issue_readers`` hands them
over from the database a chunk at a time, in address order, each merged
(``choices.merged``), with the provider's suppression and what the ledger
has for them for this issue; the send routes and batches them as they come.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from sqlalchemy import and_, bindparam, select
from sqlalchemy.engine import Engine

from newsletter.audience.choices import merged
from newsletter.audience.personalise import Addressee
from newsletter.audience.store import ReaderStore
from newsletter.db.schema import deliveries, readers, suppressions
from newsletter.delivery.links import Links
from newsletter.settings import Settings, with_sample_defaults
from newsletter.support.batches import chunks

# Readers a query: large enough that the queries cost little next to the
# rows, small enough that a chunk's rows are a few megabytes.
CHUNK = 5000
# Addresses per look-up by key (SQLite caps bound parameters per statement).
LOOKUP = 500


def reader_links(settings: Settings) -> Links:
    """The links a send would put in emails: with the sample secret where the outbox would use it."""
    if not settings.secret.get_secret_value():
        settings, _ = with_sample_defaults(settings)
    return Links(settings)


def reader_store(settings: Settings, engine: Engine) -> ReaderStore:
    """The readers of ``engine``'s database, found by the same tokens the emails' links carry."""
    return ReaderStore(engine, reader_links(settings).token)


def _stream_query() -> Any:
    rule = merged(readers)
    ledger = deliveries.alias("d")
    joined = readers.outerjoin(suppressions, suppressions.c.email == readers.c.key).outerjoin(
        ledger, and_(ledger.c.issue_id == bindparam("issue_id"), ledger.c.email == readers.c.key)
    )
    return (
        select(
            readers.c.key,
            readers.c.email,
            rule["name"],
            rule["topics"],
            rule["status"],
            suppressions.c.reason,
            ledger.c.status,
            ledger.c.reason,
        )
        .select_from(joined)
        .where(readers.c.key > bindparam("after"))
        .order_by(readers.c.key)
        .limit(bindparam("chunk"))
    )


_STREAM = _stream_query()


# key, email, name, topics, status, suppressed (why), the ledger's status and reason (None: no row)
Streamed = tuple[str, str, str, str, str, str | None, str | None, str | None]


def issue_readers(store: ReaderStore, issue_id: str, chunk: int = CHUNK) -> Iterator[Sequence[Streamed]]:
    """Every reader, ``chunk`` at a time in address order: (key, email, name, topics, status,
    suppressed, ledger status, ledger reason), the last two None where the ledger has no row.

    Each chunk is a query of its own, after the last address of the one
    before (no cursor left open: no snapshot pinned through a long send, and
    each chunk sees the claims other senders made meanwhile).
    """
    after = ""
    while True:
        with store.reads.connect() as conn:
            found = conn.execute(_STREAM, {"issue_id": issue_id, "after": after, "chunk": chunk})
            rows = cast(Sequence[Streamed], found.all())
        if not rows:
            return
        yield rows
        if len(rows) < chunk:
            return
        after = rows[-1][0]


def addressees(store: ReaderStore, keys: Iterable[str]) -> dict[str, Addressee]:
    """The readers of these keys (lower-case addresses) that are in the table, by key."""
    rule = merged(readers)
    found: dict[str, Addressee] = {}
    with store.reads.connect() as conn:
        for chunk in chunks(list(keys), LOOKUP):
            query = select(readers.c.key, readers.c.email, rule["name"]).where(readers.c.key.in_(chunk))
            found.update((key, Addressee(key, email, name)) for key, email, name in conn.execute(query))
    return found
