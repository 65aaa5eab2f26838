"""Which ``send_at`` times the minute check has acted on, kept in the ledger's database.

The table makes the minute job try each ``send_at`` once (and tell the
author once), however often it looks and however many schedulers restart.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.db.schema import send_at_attempts

# not_ready: told the author; tried again (silently) until it is ready.
# sending: a run owns it. done: sent (or tried and failed: the author was told).
NOT_READY, SENDING, DONE = "not_ready", "sending", "done"


class SendAtAttempts:
    """Which ``send_at`` times have been acted on, in the ledger's database."""

    def __init__(self, engine: Engine) -> None:
        """``engine``: the ledger's (``Ledger.engine``), whose opening made the table."""
        self.engine = engine

    @staticmethod
    def key(at: datetime) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def state(self, issue_id: str, at: datetime) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(send_at_attempts.c.state).where(
                    send_at_attempts.c.issue_id == issue_id, send_at_attempts.c.send_at == self.key(at)
                )
            ).scalar()

    def move(self, issue_id: str, at: datetime, old: str | None, new: str) -> bool:
        """Compare and set: ``old`` → ``new``; False if another run got there first."""
        now = datetime.now(UTC)
        if old is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(send_at_attempts).values(
                            issue_id=issue_id, send_at=self.key(at), state=new, updated_at=now
                        )
                    )
            except IntegrityError:
                return False
            return True
        with self.engine.begin() as conn:
            done = conn.execute(
                update(send_at_attempts)
                .where(
                    send_at_attempts.c.issue_id == issue_id,
                    send_at_attempts.c.send_at == self.key(at),
                    send_at_attempts.c.state == old,
                )
                .values(state=new, updated_at=now)
            )
            return done.rowcount == 1

    def release_interrupted(self) -> list[str]:
        """Give sends cut short (the scheduler was killed) back to the minute check; their issue ids.

        Call it only when no run can be sending (the scheduler starting,
        holding its lease): the ledger then resends none of those already sent.
        """
        with self.engine.begin() as conn:
            ids = list(
                conn.execute(select(send_at_attempts.c.issue_id).where(send_at_attempts.c.state == SENDING)).scalars()
            )
            conn.execute(
                update(send_at_attempts)
                .where(send_at_attempts.c.state == SENDING)
                .values(state=NOT_READY, updated_at=datetime.now(UTC))
            )
        return ids
