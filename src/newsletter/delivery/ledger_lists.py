"""The ledger's lists: the provider's suppressions copied locally, and what ``status`` shows.

Read-mostly queries of the send ledger, apart from its claims and outcomes
(``ledger.py``), which ``Ledger`` inherits with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from newsletter.db.schema import deliveries, suppressions


@dataclass(frozen=True)
class Row:
    email: str
    status: str
    reason: str | None
    variant: str | None
    message_id: str | None
    updated_at: datetime


class LedgerLists:
    """Suppressions and reports over the ledger's engine."""

    engine: Engine

    # -- suppressions (the provider's do-not-send lists, copied locally) -------

    def replace_suppressions(self, found: dict[str, str]) -> None:
        """Make the local copy exactly ``found`` (address → reason), in one transaction."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(suppressions.delete())
            if found:
                conn.execute(
                    insert(suppressions), [{"email": e, "reason": r, "synced_at": now} for e, r in found.items()]
                )

    def suppressed(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(suppressions.c.email, suppressions.c.reason)).all())

    # -- reports ----------------------------------------------------------------

    def counts(self, issue_id: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.status, func.count())
                .where(deliveries.c.issue_id == issue_id)
                .group_by(deliveries.c.status)
            ).all()
        return {status: count for status, count in rows}

    def rows(self, issue_id: str, statuses: Sequence[str]) -> list[Row]:
        with self.engine.connect() as conn:
            result = conn.execute(
                select(
                    deliveries.c.email,
                    deliveries.c.status,
                    deliveries.c.reason,
                    deliveries.c.variant,
                    deliveries.c.message_id,
                    deliveries.c.updated_at,
                )
                .where(deliveries.c.issue_id == issue_id, deliveries.c.status.in_(statuses))
                .order_by(deliveries.c.email)
            )
            return [Row(*r) for r in result]
