"""The ledger's writes that run for every reader of a send, on SQLite and on PostgreSQL.

Three kinds, each with what makes it cheap on each database:

- recording readers ``queued`` and inserting a
  claim's: the addresses go as one parameter, not one each (SQLAlchemy's
  parameter processing costs ~20 µs a row, the driver's executemany ~2): a
  JSON array, encoded in C (psycopg quotes an array's elements one by one
  in Python: a third more of the claiming thread's time);
- claiming a batch: one transaction. On PostgreSQL it skips the existing
  rows another transaction holds (``FOR UPDATE SKIP LOCKED``), so a claim
  never waits for another sender's request; it looks each address up by
  the unique index whatever the table's statistics say; and it inserts its
  new readers with a plain INSERT until another sender is found to have
  some of them (``Rows.claim``);
- the answer to a batch: held and written in the transaction of the next
  claim (``hold_outcome``), one commit a batch instead of two; a batch the
  provider took is one row of ``sent_batches``, its readers' rows left
  ``sending`` (``answers`` reads them together), not an update of each.

The send streams its readers (``delivery.readers``) and records them as it
goes. A batch's new readers are given to its claim (``new``) and written
straight as ``sending`` by it: one write a row, where a ``queued`` row
would be written only to be changed a moment later (on PostgreSQL that
halved a batch's time in the database). The skipped readers are not rows
of ``deliveries`` but a row for each chunk of the stream (``skips``),
written by a thread of their own while the batches go, never by a claim
(claims come one after the other) nor by the send loop. Rows are written
sorted by address, so that two runs writing the same readers take row locks
in one order and cannot deadlock.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from newsletter.delivery import skips
from newsletter.delivery.skips import Sheet

SENT, SKIPPED, FAILED, SENDING, IN_DOUBT, QUEUED = "sent", "skipped", "failed", "sending", "in_doubt", "queued"
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


class Rows:
    """Writes the ledger's rows for a send; holds what can wait for the next claim."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._p = "%s" if self.postgres else "?"  # the driver's placeholder
        self._outcomes: list[tuple[str, str | None, str | None, str]] = []  # status, message id, reason, batch
        self._writer = _Writer(self._bulk)  # the skipped readers
        # Another sender was found inserting this ledger's readers (see ``claim``).
        self.contested = False
        # The answers held are added to by the send loop and taken by the claiming thread.
        self._lock = threading.Lock()

    # -- what is written ------------------------------------------------------

    def queue(self, issue_id: str, emails: Iterable[str]) -> None:
        """Write readers ``queued``, unless they have a row (sorted: see ``claim``)."""
        with self.transaction() as conn:
            self._insert_queued(conn, issue_id, sorted(set(emails)))

    def skip(self, issue_id: str, after: str, upto: str | None, sheet: Sheet, stale: Sequence[str]) -> None:
        """The readers skipped in a range of addresses, by reason (``skips.write``).

        Written by a thread of their own while the batches go, so they hold
        up no claim, nor the send loop (``wait_for_writes``).
        """
        self._writer.put(
            partial(self._write_skipped, issue_id=issue_id, after=after, upto=upto, sheet=sheet, stale=stale)
        )

    def _write_skipped(
        self, conn: Connection, *, issue_id: str, after: str, upto: str | None, sheet: Sheet, stale: Sequence[str]
    ) -> None:
        skips.write(conn, issue_id=issue_id, after=after, upto=upto, sheet=sheet)
        if stale:  # queued rows would hide the sheet's readers (a reader's row wins over it)
            conn.exec_driver_sql(
                f"DELETE FROM deliveries WHERE issue_id = {self._p} AND status = '{QUEUED}' "
                f"AND email IN (SELECT email FROM {self._readers()} AS r)",
                (issue_id, json.dumps(sorted(stale))),
            )

    def wait_for_writes(self) -> None:
        """Wait for the skipped readers being written, and raise what stopped that."""
        self._writer.drain()

    def hold_outcome(self, batch_id: str, status: str, message_id: str | None, reason: str | None) -> None:
        with self._lock:
            self._outcomes.append((status, message_id, reason, batch_id))

    @contextmanager
    def _bulk(self) -> Iterator[Connection]:
        """A transaction of readers' rows that need not wait for the disk.

        On PostgreSQL it does not wait for its commit to be flushed
        (``synchronous_commit``): a crash can lose those rows only with what
        came after them, claims included, which do wait; and a run records
        its readers again. (SQLite's setting is the connection's, not the
        transaction's: there it waits, in the writing thread.)
        """
        with self.engine.begin() as conn:
            if self.postgres:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    @property
    def held(self) -> bool:
        return bool(self._outcomes or self._writer.busy)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction that first writes everything held (and waits for the skipped readers being written)."""
        self.wait_for_writes()
        with self._holding() as conn:
            yield conn

    @contextmanager
    def _holding(self) -> Iterator[Connection]:
        """A transaction that first writes the held outcomes.

        They are taken at once (another thread's transaction does not write
        them too); a failed transaction leaves them held again.
        """
        with self._lock:
            outcomes = self._outcomes[:]
            del self._outcomes[:]
        try:
            with self.engine.begin() as conn:
                if outcomes:
                    self._write_outcomes(conn, outcomes)
                yield conn
        except BaseException:
            with self._lock:
                self._outcomes[:0] = outcomes
            raise

    def claim(
        self,
        issue_id: str,
        emails: Sequence[str],
        claimable: list[str],
        values: dict[str, str],
        also: Callable[[Connection], object] | None,
        new: Sequence[str] = (),
    ) -> set[str]:
        """Claim for ``values`` (batch_id, run_id, variant) the readers of ``emails`` in a ``claimable`` status.

        One transaction, one commit: what is held for it (the answers to the
        batches before), ``also`` (the run's heartbeat, if due), the claim.
        ``new``: readers with no row yet, inserted as ours.

        On PostgreSQL ``new`` is first inserted by a plain INSERT, which
        fails if another sender has inserted one of them since the stream
        read them: the transaction is then made again, its insert leaving
        those readers to the other (ON CONFLICT DO NOTHING), and so is every
        claim after it (``contested``, which the ledger also sets while it
        finds another run of the issue going). One sender never meets the other
        case, and ON CONFLICT costs: it looks each row up in the unique index
        before inserting it, and confirms it in the log after (52,000 rows:
        0.25 s of the server's CPU, 0.16 s without; in a send to 100,000
        readers, the server's CPU 0.62 s, 0.48 s without).
        """
        # The batch's new readers are written straight as ours: one write a
        # row, not a queued row and then its claim. Sorted, so two senders
        # inserting the same readers take them in one order and cannot
        # deadlock; on PostgreSQL a sender inserting a reader that another's
        # claim inserted a moment before waits for that claim to commit (a few
        # milliseconds, never a request), then leaves it to them.
        inserting = sorted(new)
        plain = self.postgres and bool(inserting) and not self.contested
        while True:
            try:
                with self._holding() as conn:
                    if also is not None:
                        also(conn)
                    if self.postgres:
                        return self._claim_postgres(conn, issue_id, emails, claimable, inserting, values, plain)
                    if self._insert_claimed(conn, issue_id, inserting, values) == len(emails):
                        return set(emails)  # all of them new, and ours: SQLite has one writer at a time
                    return self._update_claimed(conn, issue_id, emails, claimable, values)
            except IntegrityError as err:
                if not plain or getattr(err.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                    raise
                self.contested, plain = True, False

    def _update_claimed(
        self, conn: Connection, issue_id: str, emails: Sequence[str], claimable: list[str], values: dict[str, str]
    ) -> set[str]:
        """SQLite: claim the readers of ``emails`` with a row (queued, failed...) if claimable; return all now ours."""
        batch_id, run_id, variant = values["batch_id"], values["run_id"], values["variant"]
        marks = ", ".join("?" * len(claimable))
        conn.exec_driver_sql(
            "UPDATE deliveries SET status = ?, variant = ?, batch_id = ?, run_id = ?, reason = NULL, "
            f"updated_at = CURRENT_TIMESTAMP WHERE issue_id = ? AND status IN ({marks}) "
            "AND email IN (SELECT value FROM json_each(?))",
            (SENDING, variant, batch_id, run_id, issue_id, *claimable, json.dumps(emails)),
        )
        # What is ours comes back as one JSON array, not a row each: each
        # row is a step that lets go of Python's lock and waits to take it
        # back from the thread handing a batch over.
        found = conn.exec_driver_sql(
            "SELECT json_group_array(email) FROM deliveries WHERE batch_id = ?", (batch_id,)
        ).scalar_one()
        return set(json.loads(found))

    def _claim_postgres(
        self,
        conn: Connection,
        issue_id: str,
        emails: Sequence[str],
        claimable: list[str],
        new: list[str],
        values: dict[str, str],
        plain: bool,
    ) -> set[str]:
        batch_id, run_id, variant = values["batch_id"], values["run_id"], values["variant"]
        ours: set[str] = set()
        if new:
            inserted = self._insert_claimed(conn, issue_id, new, values, plain=plain)
            if inserted == len(new):  # the usual case: no row of them another sender inserted
                ours.update(new)
            elif inserted:
                found = conn.exec_driver_sql("SELECT email FROM deliveries WHERE batch_id = %s", (batch_id,))
                ours.update(found.scalars())
        rest = [e for e in emails if e not in ours]
        if rest:
            # Rows that exist (queued, failed... or another sender's): locked
            # if claimable, skipping those another transaction holds (never
            # waiting), one index look-up an address (LATERAL); then each
            # updated by its key. One UPDATE for them all would be planned
            # from the table's statistics, which during a send say the issue
            # has next to no rows: as a scan of the issue's every row, for
            # each batch. A statement per row is one look-up whatever the
            # statistics, and locked rows are the ones it finds.
            locked = list(
                conn.exec_driver_sql(
                    "SELECT x.email FROM json_array_elements_text(%s::json) AS r(email) CROSS JOIN LATERAL ("
                    "SELECT d.email FROM deliveries AS d WHERE d.issue_id = %s AND d.email = r.email "
                    "AND d.status = ANY(%s::text[]) FOR UPDATE SKIP LOCKED) AS x",
                    (json.dumps(rest), issue_id, claimable),
                ).scalars()
            )
            if locked:
                conn.exec_driver_sql(
                    "UPDATE deliveries SET status = %s, variant = %s, batch_id = %s, run_id = %s, reason = NULL, "
                    "updated_at = CURRENT_TIMESTAMP WHERE issue_id = %s AND email = %s",
                    [(SENDING, variant, batch_id, run_id, issue_id, e) for e in locked],
                )
                ours.update(locked)
        return ours

    # -- the statements -------------------------------------------------------------

    def _readers(self) -> str:
        """A row source of the addresses given as one parameter (a JSON array), in the order given."""
        if self.postgres:
            return "(SELECT value AS email FROM json_array_elements_text(%s::json))"
        return "(SELECT value AS email FROM json_each(?))"

    def _insert_claimed(
        self, conn: Connection, issue_id: str, emails: list[str], values: dict[str, str], *, plain: bool = False
    ) -> int:
        """Insert readers with no row as claimed for ``values``; how many were (those another claim has are not).

        ``plain``: all of them, or an IntegrityError if one has a row.
        """
        if not emails:
            return 0
        p = self._p
        return conn.exec_driver_sql(
            "INSERT INTO deliveries (issue_id, email, status, variant, batch_id, run_id, updated_at) "
            f"SELECT {p}, email, '{SENDING}', {p}, {p}, {p}, CURRENT_TIMESTAMP FROM {self._readers()} AS r"
            + ("" if plain else " WHERE true ON CONFLICT (issue_id, email) DO NOTHING"),
            (issue_id, values["variant"], values["batch_id"], values["run_id"], json.dumps(emails)),
        ).rowcount

    def _insert_queued(self, conn: Connection, issue_id: str, emails: list[str]) -> None:
        # WHERE true: SQLite's parser needs it before ON CONFLICT in INSERT ... SELECT.
        conn.exec_driver_sql(
            f"INSERT INTO deliveries (issue_id, email, status, updated_at) SELECT {self._p}, email, '{QUEUED}', "
            f"CURRENT_TIMESTAMP FROM {self._readers()} AS r WHERE true ON CONFLICT (issue_id, email) DO NOTHING",
            (issue_id, json.dumps(emails)),
        )

    def _write_outcomes(self, conn: Connection, outcomes: list[tuple[str, str | None, str | None, str]]) -> None:
        p = self._p
        if sent := [(batch, message_id) for status, message_id, _, batch in outcomes if status == SENT]:
            conn.exec_driver_sql(
                f"INSERT INTO sent_batches (batch_id, message_id, sent_at) VALUES ({p}, {p}, CURRENT_TIMESTAMP)", sent
            )
        if other := [outcome for outcome in outcomes if outcome[0] != SENT]:
            # By batch alone (batch ids are unique): with the issue too, PostgreSQL
            # may also scan the issue's whole index while the table has no statistics.
            # Driver SQL: an ``update()`` built for each batch was ~2 ms of Python a batch.
            conn.exec_driver_sql(
                f"UPDATE deliveries SET status = {p}, message_id = {p}, reason = {p}, updated_at = CURRENT_TIMESTAMP "
                f"WHERE batch_id = {p} AND status = '{SENDING}'",
                other,
            )


class _Writer:
    """A thread that writes, in order and each in a transaction of its own, what a send need not wait for.

    At most a few jobs wait (``put`` blocks beyond them): memory stays flat.
    """

    def __init__(self, transaction: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._transaction = transaction
        self._jobs: queue.Queue[Callable[[Connection], object]] = queue.Queue(maxsize=4)
        self._failed: list[BaseException] = []
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return bool(self._jobs.unfinished_tasks or self._failed)

    def put(self, job: Callable[[Connection], object]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="newsletter-skipped", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def drain(self) -> None:
        """Wait for every job put; raise the first error one raised (the jobs after it were not run)."""
        self._jobs.join()
        if self._failed:
            failed, self._failed = self._failed[0], []
            raise failed

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if not self._failed:
                    with self._transaction() as conn:
                        job(conn)
            except BaseException as err:  # raised by drain, in the caller's thread
                self._failed.append(err)
            finally:
                self._jobs.task_done()
