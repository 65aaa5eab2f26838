"""The send ledger: who has been sent which issue, in a database.

Every reader of an issue has at most one row. Its status moves

    (none) / skipped / failed ──claim──▶ sending ──▶ sent | failed
                                            │
                                  process died ▼
                                         in_doubt ──(--resend-in-doubt)──▶ sending

A claim is a conditional write in one transaction, so two processes sending
the same issue can never both own a reader; it is taken just before the batch
is handed to the provider. A row left in ``sending`` by a process that is no
longer alive was handed over, or about to be, with no answer recorded: its
outcome is unknown, so it becomes ``in_doubt`` and is not resent unless asked.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from newsletter.db import open_database
from newsletter.db.schema import deliveries, runs, suppressions
from newsletter.support.batches import chunks
from newsletter.support.processes import alive, start_time

SENT, SKIPPED, FAILED, SENDING, IN_DOUBT = "sent", "skipped", "failed", "sending", "in_doubt"
# A run on another host is presumed dead when silent this long.
RUN_LEASE = timedelta(minutes=10)
# SQLite caps bound parameters per statement; stay well under it.
PARAMETERS = 500


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Row:
    email: str
    status: str
    reason: str | None
    variant: str | None
    message_id: str | None
    updated_at: datetime


class Ledger:
    """Outcomes per issue and address, with claims that cannot collide."""

    def __init__(self, url: str) -> None:
        """Open the database at ``url``, creating or upgrading its schema (ConfigError if it cannot)."""
        self.engine: Engine = open_database(url)

    def _many(self, conn: Connection, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """Run one statement for many rows straight through the driver.

        These statements run once per reader of a send; SQLAlchemy's own
        parameter processing costs ~20 µs a row, the driver's executemany ~1.
        The SQL is the same in SQLite and PostgreSQL but for the placeholder.
        """
        if self.engine.dialect.paramstyle != "qmark":
            sql = sql.replace("?", "%s")
        conn.exec_driver_sql(sql, rows)

    # -- runs -----------------------------------------------------------------

    def start_run(self, issue_id: str) -> str:
        run_id = uuid.uuid4().hex
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                insert(runs).values(
                    run_id=run_id,
                    issue_id=issue_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    proc_start=start_time(os.getpid()),
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        return run_id

    def finish_run(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(finished_at=_now()))

    def _dead_runs(self, conn: Connection, issue_id: str) -> list[str]:
        host = socket.gethostname()
        dead = []
        rows = conn.execute(
            select(runs).where(
                runs.c.issue_id == issue_id,
                runs.c.run_id.in_(
                    select(deliveries.c.run_id).where(deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING)
                ),
            )
        )
        for run in rows:
            heartbeat = run.heartbeat_at if run.heartbeat_at.tzinfo else run.heartbeat_at.replace(tzinfo=UTC)
            if (
                run.finished_at is not None
                or (run.host == host and not alive(run.pid, run.proc_start))
                or _now() - heartbeat > RUN_LEASE
            ):
                dead.append(run.run_id)
        return dead

    def settle_orphans(self, issue_id: str) -> list[str]:
        """Mark rows left ``sending`` by dead runs ``in_doubt``; return their addresses."""
        with self.engine.begin() as conn:
            dead = self._dead_runs(conn, issue_id)
            if not dead:
                return []
            emails = list(
                conn.execute(
                    select(deliveries.c.email).where(
                        deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING, deliveries.c.run_id.in_(dead)
                    )
                ).scalars()
            )
            conn.execute(
                update(deliveries)
                .where(deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING, deliveries.c.run_id.in_(dead))
                .values(
                    status=IN_DOUBT,
                    reason="process stopped after handing over the batch, before the answer",
                    updated_at=_now(),
                )
            )
        return emails

    # -- claims and outcomes ----------------------------------------------------

    def statuses(self, issue_id: str) -> dict[str, str]:
        """Address → status for every reader of the issue not merely skipped.

        A skipped reader may be sent the issue later (they changed their
        topics), so to the send loop they are the same as no row at all.
        """
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    select(deliveries.c.email, deliveries.c.status).where(
                        deliveries.c.issue_id == issue_id, deliveries.c.status != SKIPPED
                    )
                ).all()
            )

    def claim(
        self,
        issue_id: str,
        emails: Sequence[str],
        *,
        run_id: str,
        batch_id: str,
        variant: str,
        resend_in_doubt: bool = False,
    ) -> list[str]:
        """Take the addresses no one else owns or has sent; return those now ours."""
        claimable = [SKIPPED, FAILED] + ([IN_DOUBT] if resend_in_doubt else [])
        now = _now()
        with self.engine.begin() as conn:
            # A claim is also the run's sign of life: one commit, not two.
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(heartbeat_at=now))
            self._many(
                conn,
                "INSERT INTO deliveries (issue_id, email, status, variant, batch_id, run_id, updated_at) "
                f"VALUES (?, ?, '{SENDING}', ?, ?, ?, CURRENT_TIMESTAMP) "
                "ON CONFLICT (issue_id, email) DO NOTHING",
                [(issue_id, e, variant, batch_id, run_id) for e in emails],
            )
            ours = set(conn.execute(select(deliveries.c.email).where(deliveries.c.batch_id == batch_id)).scalars())
            # Readers with a row already (skipped, failed, in doubt) are taken
            # by a conditional update; on a first send there are none.
            rest = [e for e in emails if e not in ours]
            for chunk in chunks(rest, PARAMETERS):
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.email.in_(chunk),
                        deliveries.c.status.in_(claimable),
                    )
                    .values(
                        status=SENDING, variant=variant, batch_id=batch_id, run_id=run_id, reason=None, updated_at=now
                    )
                )
            if rest:
                ours = set(conn.execute(select(deliveries.c.email).where(deliveries.c.batch_id == batch_id)).scalars())
            return [e for e in emails if e in ours]

    def release(self, batch_id: str) -> None:
        """Give back a claim that was never handed over (e.g. a refused configuration)."""
        with self.engine.begin() as conn:
            conn.execute(deliveries.delete().where(deliveries.c.batch_id == batch_id, deliveries.c.status == SENDING))

    def record_failed(self, issue_id: str, batch_id: str, failed: dict[str, str]) -> None:
        """Mark the addresses of one batch that the provider refused (address → its reason)."""
        now = _now()
        with self.engine.begin() as conn:
            for email, reason in failed.items():
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.email == email,
                        deliveries.c.batch_id == batch_id,
                    )
                    .values(status=FAILED, reason=reason, updated_at=now)
                )

    def record_batch(
        self, issue_id: str, batch_id: str, status: str, *, message_id: str | None = None, reason: str | None = None
    ) -> None:
        """The same outcome for every address of a batch (one statement)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == issue_id, deliveries.c.batch_id == batch_id, deliveries.c.status == SENDING
                )
                .values(status=status, message_id=message_id, reason=reason, updated_at=_now())
            )

    def record_skipped(self, issue_id: str, skipped: Iterable[tuple[str, str]]) -> None:
        """Note why readers were not sent the issue, unless they already have a row."""
        rows = [(issue_id, e, r) for e, r in skipped]
        if not rows:
            return
        with self.engine.begin() as conn:
            self._many(
                conn,
                "INSERT INTO deliveries (issue_id, email, status, reason, updated_at) "
                f"VALUES (?, ?, '{SKIPPED}', ?, CURRENT_TIMESTAMP) "
                "ON CONFLICT (issue_id, email) DO UPDATE SET reason = excluded.reason, "
                f"updated_at = excluded.updated_at WHERE deliveries.status = '{SKIPPED}'",
                rows,
            )

    def resolve(self, issue_id: str, emails: Iterable[str], status: str) -> None:
        """Settle in-doubt rows whose outcome the backend can tell after all."""
        with self.engine.begin() as conn:
            for chunk in chunks(list(emails), PARAMETERS):
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.email.in_(chunk),
                        deliveries.c.status == IN_DOUBT,
                    )
                    .values(
                        status=status,
                        reason=None if status == SENT else "never reached the provider",
                        updated_at=_now(),
                    )
                )

    # -- suppressions (the provider's do-not-send lists, copied locally) -------

    def replace_suppressions(self, found: dict[str, str]) -> None:
        """Make the local copy exactly ``found`` (address → reason), in one transaction."""
        now = _now()
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

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
