"""A reader's status as the ledger reads it: their row, and the batch the provider took them in.

A batch the provider took is one row of ``sent_batches``, written with the
next claim; its readers' rows stay ``sending``. So a row ``sending`` whose
batch has that row was sent, and every read of a status goes through
``status`` below. Any other status is the row's own: failed, in doubt, a
reader the provider refused within a batch it took. (A batch's other
answers, failed or in doubt, are rare, and written into its readers' rows.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, select
from sqlalchemy.sql import ColumnElement, FromClause

from newsletter.db.schema import deliveries, sent_batches
from newsletter.delivery.ledger_rows import SENDING, SENT

_taken = sent_batches.c


def joined(rows: Any = deliveries, onto: Any = None) -> FromClause:
    """``rows`` (the ledger's table or an alias of it; ``onto``: a join of it) with the batches the provider took."""
    return (rows if onto is None else onto).outerjoin(sent_batches, _taken.batch_id == rows.c.batch_id)  # type: ignore[no-any-return]


def _sent(rows: Any) -> ColumnElement[bool]:
    return and_(rows.c.status == SENDING, _taken.batch_id.is_not(None))


def status(rows: Any = deliveries) -> ColumnElement[str]:
    """A row's status (from ``joined``)."""
    return case((_sent(rows), SENT), else_=rows.c.status)


def message_id(rows: Any = deliveries) -> ColumnElement[str | None]:
    """The provider's id for the request a row was sent in (from ``joined``)."""
    return case((_sent(rows), _taken.message_id), else_=rows.c.message_id)


def updated_at(rows: Any = deliveries) -> ColumnElement[Any]:
    """When a row's status last changed (from ``joined``)."""
    return case((_sent(rows), _taken.sent_at), else_=rows.c.updated_at)


def unanswered() -> ColumnElement[bool]:
    """Rows claimed and handed over, or about to be, with no answer yet (from ``deliveries`` alone)."""
    # NOT IN, not NOT EXISTS: both databases hash the batches once, where a
    # look-up for each row of a sent issue was most of the query on SQLite.
    return and_(deliveries.c.status == SENDING, deliveries.c.batch_id.not_in(select(_taken.batch_id)))
