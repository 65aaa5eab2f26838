"""The send ledger: who has been sent which issue, in a database (SQLite or PostgreSQL).

Every reader of an issue has at most one row. Its status moves

    (none) ──enqueue──▶ queued ──claim──▶ sending ──▶ sent | failed
    skipped / failed ──────claim──────▶    │
                                  process died ▼
                                         in_doubt ──(--resend-in-doubt)──▶ sending

A run first records its readers (``enqueue``: ``queued``, and ``skipped``
with the reason), then claims them batch by batch, each just before the
batch is handed to the provider. A claim is a conditional update in one
transaction, so two processes sending the same issue can never both own a
reader. On PostgreSQL it skips rows another claim holds at that moment
(``FOR UPDATE SKIP LOCKED``) instead of waiting for it: senders on several
machines never wait on each other's claims, they just take other readers.
(The rows exist before any claim so that a claim never inserts: an insert
of a key that another open transaction has inserted waits for it.)

A row left in ``sending`` by a process that is no longer alive was handed
over, or about to be, with no answer recorded: its outcome is unknown, so it
becomes ``in_doubt`` and is not resent unless asked. A run on this machine
is known dead when its pid is; one elsewhere (another machine, another PID
namespace) when its heartbeat is older than ``RUN_LEASE``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from newsletter.db import database_now, open_database
from newsletter.db.schema import deliveries, runs
from newsletter.delivery.ledger_lists import LedgerLists
from newsletter.support.batches import chunks
from newsletter.support.processes import alive, ours_to_check, pid_space, start_time

SENT, SKIPPED, FAILED, SENDING, IN_DOUBT, QUEUED = "sent", "skipped", "failed", "sending", "in_doubt", "queued"
# A run elsewhere is presumed dead when silent this long. A live run beats
# at every claim and at least every HEARTBEAT while a request is in flight.
RUN_LEASE = timedelta(minutes=10)
HEARTBEAT = timedelta(minutes=1)
# SQLite caps bound parameters per statement; stay well under it.
PARAMETERS = 500
# Readers recorded per transaction at the start of a run on PostgreSQL: a
# second run recording the same readers at once waits for one chunk, not all.
# (SQLite writes one at a time anyway: there, one transaction, one commit.)
RECORD_CHUNK = 5000


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC


class Ledger(LedgerLists):
    """Outcomes per issue and address, with claims that cannot collide."""

    def __init__(self, url: str) -> None:
        """Open the database at ``url``, creating or upgrading its schema (ConfigError if it cannot)."""
        self.engine: Engine = open_database(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        # Batch outcomes to write with the next claim (see record_batch).
        self._unwritten: list[dict[str, str | None]] = []

    def _add_readers(self, sql: str, issue_id: str, groups: dict[tuple[str, ...], list[str]]) -> None:
        """Run an INSERT of many readers' rows: ``groups`` maps the statement's other values to addresses.

        These write a row for every reader of a send, so the addresses go as
        one parameter, not one each (SQLAlchemy's parameter processing costs
        ~20 µs a row, the driver's executemany ~2): a JSON array on SQLite,
        an array on PostgreSQL, which ``{readers}`` in ``sql`` unpacks; ``{p}``
        is the driver's placeholder. Parameters: the issue id, the group's
        values, the addresses. On PostgreSQL in chunks of RECORD_CHUNK, each
        sorted, so that two runs writing the same readers take row locks in
        one order and cannot deadlock.
        """
        p = "%s" if self.postgres else "?"
        readers = (
            f"(SELECT unnest({p}::text[]) AS email)"
            if self.postgres
            else f"(SELECT value AS email FROM json_each({p}))"
        )
        statement = sql.format(p=p, readers=readers)
        jobs = [
            (issue_id, *values, chunk if self.postgres else json.dumps(chunk))
            for values, emails in groups.items()
            for chunk in chunks(sorted(emails), RECORD_CHUNK if self.postgres else len(emails) or 1)
        ]
        if self.postgres:
            for job in jobs:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(statement, job)
        else:
            with self.engine.begin() as conn:
                for job in jobs:
                    conn.exec_driver_sql(statement, job)

    # -- runs -----------------------------------------------------------------

    def start_run(self, issue_id: str) -> str:
        run_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                insert(runs).values(
                    run_id=run_id,
                    issue_id=issue_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    proc_start=start_time(os.getpid()),
                    pid_space=pid_space(),
                    # the database's clock, the one every sender's heartbeat is judged by
                    started_at=func.current_timestamp(),
                    heartbeat_at=func.current_timestamp(),
                )
            )
        return run_id

    def heartbeat(self, run_id: str) -> None:
        """The run's sign of life, for senders elsewhere (claims beat too)."""
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(heartbeat_at=func.current_timestamp()))

    def finish_run(self, run_id: str) -> None:
        with self._begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(finished_at=_now()))

    def _dead_runs(self, conn: Connection, issue_id: str) -> list[str]:
        now, dead = database_now(conn), []
        rows = conn.execute(
            select(runs).where(
                runs.c.issue_id == issue_id,
                runs.c.run_id.in_(
                    select(deliveries.c.run_id).where(deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING)
                ),
            )
        )
        for run in rows:
            if (
                run.finished_at is not None
                or (ours_to_check(run.host, run.pid_space) and not alive(run.pid, run.proc_start))
                or now - _aware(run.heartbeat_at) > RUN_LEASE
            ):
                dead.append(run.run_id)
        return dead

    def settle_orphans(self, issue_id: str) -> list[str]:
        """Mark rows left ``sending`` by dead runs ``in_doubt``; return their addresses."""
        with self.engine.begin() as conn:
            dead = self._dead_runs(conn, issue_id)
            if not dead:
                return []
            left = (deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING, deliveries.c.run_id.in_(dead))
            emails = list(conn.execute(select(deliveries.c.email).where(*left)).scalars())
            conn.execute(
                update(deliveries)
                .where(*left)
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

    def enqueue(self, issue_id: str, emails: Iterable[str]) -> None:
        """Record readers about to be sent the issue (``queued``), unless they already have a row."""
        found = list(emails)
        if found:
            self._add_readers(
                f"INSERT INTO deliveries (issue_id, email, status, updated_at) SELECT {{p}}, email, '{QUEUED}', "
                "CURRENT_TIMESTAMP FROM {readers} AS r WHERE true ON CONFLICT (issue_id, email) DO NOTHING",
                issue_id,
                {(): found},
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
        """Take the addresses that are queued, skipped or failed and that no one else holds; return those now ours.

        Readers must have a row (``enqueue``): a claim never inserts, so on
        PostgreSQL it never waits for another claim (see the module docstring).
        """
        claimable = [QUEUED, SKIPPED, FAILED] + ([IN_DOUBT] if resend_in_doubt else [])
        if self.postgres:
            sql = (
                f"UPDATE deliveries SET status = '{SENDING}', variant = %s, batch_id = %s, run_id = %s, reason = NULL, "
                "updated_at = CURRENT_TIMESTAMP WHERE id IN (SELECT id FROM deliveries WHERE issue_id = %s "
                "AND status = ANY(%s::text[]) AND email = ANY(%s::text[]) FOR UPDATE SKIP LOCKED) RETURNING email"
            )
            params: tuple[object, ...] = (variant, batch_id, run_id, issue_id, claimable, list(emails))
        else:
            # One statement for the batch: the addresses as one JSON array, not a parameter each.
            sql = (
                f"UPDATE deliveries SET status = '{SENDING}', variant = ?, batch_id = ?, run_id = ?, reason = NULL, "
                f"updated_at = CURRENT_TIMESTAMP WHERE issue_id = ? AND status IN ({', '.join('?' * len(claimable))}) "
                "AND email IN (SELECT value FROM json_each(?)) RETURNING email"
            )
            params = (variant, batch_id, run_id, issue_id, *claimable, json.dumps(emails))
        # One commit for the answers to the batches before (record_batch), the run's sign of life and the claim.
        with self._begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(heartbeat_at=func.current_timestamp()))
            ours = set(conn.exec_driver_sql(sql, params).scalars())
        return [e for e in emails if e in ours]

    def release(self, batch_id: str) -> None:
        """Give back a claim that was never handed over (e.g. a refused configuration): queued again."""
        with self._begin() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.batch_id == batch_id, deliveries.c.status == SENDING)
                .values(status=QUEUED, batch_id=None, run_id=None, variant=None, updated_at=_now())
            )

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
        self,
        issue_id: str,
        batch_id: str,
        status: str,
        *,
        message_id: str | None = None,
        reason: str | None = None,
        with_next_claim: bool = False,
    ) -> None:
        """The same outcome for every address of a batch (one statement).

        ``with_next_claim``: written in the transaction of this ledger's next
        claim (or ``flush``, ``release``, ``finish_run``): one commit a batch
        in the send loop instead of two. Until then the batch is still
        ``sending``; a crash in between leaves it in doubt, as a crash just
        before the answer would.
        """
        self._unwritten.append(
            {"o_issue": issue_id, "o_batch": batch_id, "o_status": status, "o_id": message_id, "o_reason": reason}
        )
        if not with_next_claim:
            self.flush()

    def flush(self) -> None:
        """Write the batch outcomes held for the next claim (``record_batch``)."""
        if self._unwritten:
            with self._begin():
                pass

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction that first writes the batch outcomes held for it (``record_batch``)."""
        held = list(self._unwritten)
        with self.engine.begin() as conn:
            if held:
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.issue_id == bindparam("o_issue"),
                        deliveries.c.batch_id == bindparam("o_batch"),
                        deliveries.c.status == SENDING,
                    )
                    .values(
                        status=bindparam("o_status"),
                        message_id=bindparam("o_id"),
                        reason=bindparam("o_reason"),
                        updated_at=func.current_timestamp(),
                    ),
                    held,
                )
            yield conn
        # Forgotten only once committed: a transaction that failed leaves them for the next.
        self._unwritten = self._unwritten[len(held) :]

    def record_skipped(self, issue_id: str, skipped: Iterable[tuple[str, str]]) -> None:
        """Note why readers are not sent the issue, unless they have a row of another kind (sent...)."""
        by_reason: dict[tuple[str, ...], list[str]] = {}
        for email, reason in skipped:
            by_reason.setdefault((reason,), []).append(email)
        if not by_reason:
            return
        # Only what changed is written: a rerun does not rewrite every skipped row.
        differs = "IS DISTINCT FROM" if self.postgres else "IS NOT"
        self._add_readers(
            f"INSERT INTO deliveries (issue_id, reason, email, status, updated_at) SELECT {{p}}, {{p}}, email, "
            f"'{SKIPPED}', CURRENT_TIMESTAMP FROM {{readers}} AS r WHERE true "
            "ON CONFLICT (issue_id, email) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
            f"updated_at = excluded.updated_at WHERE deliveries.status = '{QUEUED}' "
            f"OR (deliveries.status = '{SKIPPED}' AND deliveries.reason {differs} excluded.reason)",
            issue_id,
            by_reason,
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

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
