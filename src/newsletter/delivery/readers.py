"""The readers' table as sends read it: with the link tokens the emails carry, and streamed with the ledger's rows.

A send never holds its readers in memory: ``issue_readers`` hands them
over from the database a chunk at a time, in address order (each chunk with
the range of addresses it covers), each merged
(``choices.merged``), with the provider's suppression and what the ledger
has for them for this issue; the send routes and batches them as they come.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import and_, bindparam, func, null, select
from sqlalchemy.engine import Connection, Dialect, Engine

from newsletter.audience.choices import merged
from newsletter.audience.personalise import Addressee
from newsletter.audience.store import ReaderStore
from newsletter.db.schema import deliveries, readers, suppressions
from newsletter.delivery import answers
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


def _stream_query(dialect: str) -> Any:
    rule = merged(readers)
    joined: Any = readers.outerjoin(suppressions, suppressions.c.email == readers.c.key)
    if dialect == "postgresql":
        # The ledger's rows are read apart (``_LEDGER``), so these are NULL here.
        # Joined, the ledger was planned from the statistics of a table that
        # grows through the send: as a scan of the issue's every row for each
        # chunk; looked up reader by reader (LATERAL), two thirds of a chunk's
        # time in the server, for a send's own run that finds next to nothing.
        had: Any = null()
        why: Any = null()
    else:
        ledger = deliveries.alias("d")
        joined = joined.outerjoin(
            ledger, and_(ledger.c.issue_id == bindparam("issue_id"), ledger.c.email == readers.c.key)
        )
        joined = answers.joined(ledger, onto=joined)
        had, why = answers.status(ledger), ledger.c.reason
    chunk = (
        select(
            readers.c.key,
            readers.c.email,
            rule["name"].label("name"),
            rule["topics"].label("topics"),
            rule["status"].label("status"),
            suppressions.c.reason.label("suppressed"),
            had.label("had"),
            why.label("why"),
        )
        .select_from(joined)
        .where(readers.c.key > bindparam("after"))
        .order_by(readers.c.key)
        .limit(bindparam("chunk"))
    )
    if dialect == "postgresql":
        return chunk
    # SQLite: the chunk as one JSON array, one row. Each row of a result is a
    # step that lets go of Python's lock and must take it back from the thread
    # handing a batch over (up to a switch interval while it encodes a
    # request): 5,000 steps a chunk made the stream a third of the send loop.
    rows = chunk.subquery()
    return select(func.json_group_array(func.json_array(*rows.c)), func.max(rows.c.key))


# key, email, name, topics, status, suppressed (why), the ledger's status and reason (None: no row)
Streamed = tuple[str, str, str, str, str, str | None, str | None, str | None]


class Chunk(NamedTuple):
    """The readers with addresses in (after, upto], in address order (``upto`` None: to the last reader)."""

    after: str
    upto: str | None
    rows: Sequence[Streamed]


def issue_readers(store: ReaderStore, issue_id: str, chunk: int = CHUNK) -> Iterator[Chunk]:
    """Every reader, ``chunk`` at a time in address order: (key, email, name, topics, status,
    suppressed, ledger status, ledger reason), the last two None where the ledger has no row.

    The chunks' ranges cover every address, one after the other: the last
    one reaches past the last reader, and may have none. Each chunk is a
    query of its own, after the last address of the one before (no cursor
    left open: no snapshot pinned through a long send, and each chunk sees
    the claims other senders made meanwhile). The rows come straight from
    the driver's cursor as tuples: SQLAlchemy's result rows were half the
    time of a stream, and these columns need no conversion.
    """
    after = ""
    while True:
        with store.reads.connect() as conn:
            sql, order, fixed = _compiled(conn.dialect)
            values = {**fixed, "issue_id": issue_id, "after": after, "chunk": chunk}
            cursor = conn.connection.cursor()
            try:
                cursor.execute(sql, [values[name] for name in order] if order else values)
                found = cursor.fetchall()
            finally:
                cursor.close()
            postgres = conn.dialect.name == "postgresql"
            rows = cast(list[Streamed], found if postgres else json.loads(found[0][0]))
            if rows and postgres:
                rows = _with_ledger(conn, issue_id, after, rows)
        if len(rows) < chunk:
            yield Chunk(after, None, rows)
            return
        # The last in the database's order: PostgreSQL's rows come in it; an
        # aggregate promises no order, so SQLite says which it is.
        upto = rows[-1][0] if postgres else found[0][1]
        yield Chunk(after, upto, rows)
        after = upto


# The issue's ledger rows in a chunk's range of addresses: a range of the
# unique index whatever the statistics say (a scan of the table would cost
# what the table is, which the planner knows at the time: its size in pages).
_LEDGER = (
    select(deliveries.c.email, answers.status(), deliveries.c.reason)
    .select_from(answers.joined())
    .where(
        deliveries.c.issue_id == bindparam("issue_id"),
        deliveries.c.email > bindparam("after"),
        deliveries.c.email <= bindparam("upto"),
    )
)


def _with_ledger(conn: Connection, issue_id: str, after: str, rows: list[Streamed]) -> list[Streamed]:
    """A PostgreSQL chunk with what the ledger has for its readers."""
    ledger = conn.execute(_LEDGER, {"issue_id": issue_id, "after": after, "upto": rows[-1][0]})
    had = {email: (status, why) for email, status, why in ledger}
    if not had:  # a first run: the rows as they came
        return rows
    return [row if (found := had.get(row[0])) is None else (*row[:6], *found) for row in rows]


_COMPILED: dict[str, tuple[str, Sequence[str] | None, dict[str, Any]]] = {}


def _compiled(dialect: Dialect) -> tuple[str, Sequence[str] | None, dict[str, Any]]:
    """The stream's statement in the driver's own terms: its text, the order of its parameters
    (None: by name), and the values of the parameters the statement fixes itself (its literals)."""
    found = _COMPILED.get(dialect.name)
    if found is None:
        compiled = _stream_query(dialect.name).compile(dialect=dialect)
        fixed = compiled.construct_params({"issue_id": "", "after": "", "chunk": 0})
        found = _COMPILED[dialect.name] = (str(compiled), compiled.positiontup, dict(fixed))
    return found


def addressees(store: ReaderStore, keys: Iterable[str]) -> dict[str, Addressee]:
    """The readers of these keys (lower-case addresses) that are in the table, by key."""
    rule = merged(readers)
    found: dict[str, Addressee] = {}
    with store.reads.connect() as conn:
        for chunk in chunks(list(keys), LOOKUP):
            query = select(readers.c.key, readers.c.email, rule["name"]).where(readers.c.key.in_(chunk))
            found.update((key, Addressee(key, email, name)) for key, email, name in conn.execute(query))
    return found
