"""The readers a send skipped, and why: one row of ``skips`` for each range of addresses.

A send streams its readers in address order, a chunk at a time. The skipped
readers of a chunk go in one row, a *sheet*: the range of addresses
(after_key, last_key] that the chunk covered, and the skipped addresses grouped
by reason. A row per skipped reader cost what a row per reader sent costs (a
row and an index entry): a third of the database server's work in a send.

A sheet is the whole truth about its range, as of the send that wrote it. A
later send's sheet for an overlapping range replaces the older sheet there.
What the older sheet said outside the new range stays, as a sheet of its own.
So an issue's sheets never overlap, and a reader is in one sheet at most.

A reader's row in ``deliveries`` (sent, failed...) wins over a sheet. A
reader skipped once may be sent the issue later (they changed their topics),
and that may happen before the send doing it writes that range's sheet. (A
``queued`` row of a reader now skipped is removed with the sheet: ``ledger_rows``.)

Sheets are written by the ledger's writer thread (``ledger_rows``). Each write
reads the sheets it overlaps, so the sheets of an issue are written one at a
time: SQLite has one writer, and on PostgreSQL a lock per issue serialises them.
Addresses are compared by the database, in its own order: the order the
stream's ranges are in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import DateTime, String, insert, text
from sqlalchemy.engine import Connection

from newsletter.db.schema import skips

# reason -> the keys (lower-case addresses) of the readers skipped for it
Sheet = Mapping[str, Sequence[str]]


def _entries(conn: Connection) -> str:
    """The sheets ``s`` as rows, one for each reader: reason ``r.key``, address ``k.value``."""
    if conn.dialect.name == "postgresql":
        return (
            "json_each(CAST(s.readers AS json)) AS r CROSS JOIN LATERAL json_array_elements_text(r.value) AS k(value)"
        )
    return "json_each(s.readers) AS r, json_each(r.value) AS k"


def _overlapping(upto: str | None, table: str = "s") -> str:
    """The issue's sheets that share an address with the range (:after, :upto]."""
    found = f"{table}.issue_id = :issue AND ({table}.last_key IS NULL OR {table}.last_key > :after)"
    return found if upto is None else f"{found} AND {table}.after_key < :upto"


def write(conn: Connection, *, issue_id: str, after: str, upto: str | None, sheet: Sheet) -> None:
    """Record the readers skipped in the range (after, upto] (``upto`` None: to the end of the list).

    What the sheets before said about the range is replaced.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:lock))"), {"lock": f"newsletter skips {issue_id}"})
    bound = {"issue": issue_id, "after": after, "upto": upto}
    outside = "k.value <= :after" if upto is None else "k.value <= :after OR k.value > :upto"
    kept = conn.execute(
        text(
            f"SELECT k.value <= :after, s.after_key, s.last_key, r.key, k.value FROM skips AS s, {_entries(conn)} "
            f"WHERE {_overlapping(upto)} AND ({outside})"
        ),
        bound,
    ).all()
    # What the sheets reaching out of the range said outside it stays, each
    # side a sheet of its own: one sheet at most on each side, since none overlap.
    left: dict[str, list[str]] = {}
    right: dict[str, list[str]] = {}
    start = end = None
    for below, first, last, reason, key in kept:
        if below:
            start = first
            left.setdefault(reason, []).append(key)
        else:
            end = last
            right.setdefault(reason, []).append(key)
    parts: list[tuple[str, str | None, dict[str, list[str]]]] = []
    if start is not None:
        parts.append((start, after, left))
    if right and upto is not None:
        parts.append((upto, end, right))
    conn.execute(text(f"DELETE FROM skips WHERE {_overlapping(upto, 'skips')}"), bound)
    if sheet:
        parts.append((after, upto, {reason: list(keys) for reason, keys in sheet.items()}))
    if parts:
        now = datetime.now(UTC)
        conn.execute(
            insert(skips),
            [
                {"issue_id": issue_id, "after_key": a, "last_key": b, "readers": json.dumps(r), "written_at": now}
                for a, b, r in parts
            ],
        )


def _without_row(conn: Connection, what: str) -> str:
    """The issue's sheet entries whose reader has no row in ``deliveries``, as ``what``."""
    return (
        f"SELECT {what} FROM skips AS s, {_entries(conn)} WHERE s.issue_id = :issue "
        "AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.issue_id = s.issue_id AND d.email = k.value)"
    )


def skipped(conn: Connection, issue_id: str) -> list[tuple[str, str, datetime]]:
    """The issue's skipped readers: (address, reason, when the sheet was written), in no order."""
    query = text(_without_row(conn, "k.value AS email, r.key AS reason, s.written_at AS written_at")).columns(
        email=String(), reason=String(), written_at=DateTime(timezone=True)
    )
    return [(email, reason, at) for email, reason, at in conn.execute(query, {"issue": issue_id})]


def count(conn: Connection, issue_id: str) -> int:
    return int(conn.execute(text(_without_row(conn, "count(*)")), {"issue": issue_id}).scalar_one())
