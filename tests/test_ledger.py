"""The ledger on a real SQLite file: claims never overlap, dead runs leave doubt."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import update

from newsletter.db.schema import runs
from newsletter.delivery.ledger import FAILED, IN_DOUBT, SENDING, SENT, SKIPPED, Ledger


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"


def test_claim_is_exclusive_and_sent_is_final(tmp_path: Path) -> None:
    ledger = Ledger(url(tmp_path))
    run = ledger.start_run("2030-01")
    first = ledger.claim("2030-01", ["a@x.org", "b@x.org"], run_id=run, batch_id="b1", variant="all")
    assert sorted(first) == ["a@x.org", "b@x.org"]
    assert ledger.claim("2030-01", ["a@x.org", "c@x.org"], run_id=run, batch_id="b2", variant="all") == ["c@x.org"]
    ledger.record_batch("2030-01", "b1", SENT, message_id="m1")
    ledger.record_batch("2030-01", "b2", FAILED, reason="boom")
    assert ledger.counts("2030-01") == {SENT: 2, FAILED: 1}
    # failed is retried, sent never
    assert ledger.claim("2030-01", ["a@x.org", "c@x.org"], run_id=run, batch_id="b3", variant="all") == ["c@x.org"]
    # another issue is independent
    assert ledger.claim("2030-02", ["a@x.org"], run_id=run, batch_id="b4", variant="all") == ["a@x.org"]


def test_skipped_rows_are_claimable_and_never_overwrite_sent(tmp_path: Path) -> None:
    ledger = Ledger(url(tmp_path))
    run = ledger.start_run("2030-01")
    ledger.claim("2030-01", ["a@x.org"], run_id=run, batch_id="b1", variant="all")
    ledger.record_batch("2030-01", "b1", SENT)
    ledger.record_skipped("2030-01", [("a@x.org", "unsubscribed"), ("b@x.org", "no match")])
    assert ledger.statuses("2030-01") == {"a@x.org": SENT}  # skipped counts as "no row" for sending
    assert [(r.email, r.reason) for r in ledger.rows("2030-01", [SKIPPED])] == [("b@x.org", "no match")]
    assert ledger.claim("2030-01", ["b@x.org"], run_id=run, batch_id="b2", variant="01") == ["b@x.org"]


def test_addresses_refused_in_an_accepted_batch_are_failed_and_retried(tmp_path: Path) -> None:
    ledger = Ledger(url(tmp_path))
    run = ledger.start_run("2030-01")
    ledger.claim("2030-01", ["a@x.org", "b@x.org"], run_id=run, batch_id="b1", variant="all")
    ledger.record_failed("2030-01", "b1", {"b@x.org": "already in the outbox"})
    ledger.record_batch("2030-01", "b1", SENT, message_id="m1")  # the rest of the batch
    assert ledger.statuses("2030-01") == {"a@x.org": SENT, "b@x.org": FAILED}
    assert [(r.email, r.reason) for r in ledger.rows("2030-01", [FAILED])] == [("b@x.org", "already in the outbox")]
    assert ledger.claim("2030-01", ["a@x.org", "b@x.org"], run_id=run, batch_id="b2", variant="all") == ["b@x.org"]


def test_rows_of_a_dead_run_become_in_doubt(tmp_path: Path) -> None:
    ledger = Ledger(url(tmp_path))
    run = ledger.start_run("2030-01")
    ledger.claim("2030-01", ["a@x.org"], run_id=run, batch_id="b1", variant="all")
    assert ledger.settle_orphans("2030-01") == []  # our own run is alive
    dead_pid = _a_dead_pid()
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run).values(pid=dead_pid))
    assert ledger.settle_orphans("2030-01") == ["a@x.org"]
    assert ledger.statuses("2030-01") == {"a@x.org": IN_DOUBT}
    other = ledger.start_run("2030-01")
    assert ledger.claim("2030-01", ["a@x.org"], run_id=other, batch_id="b2", variant="all") == []
    assert ledger.claim("2030-01", ["a@x.org"], run_id=other, batch_id="b3", variant="all", resend_in_doubt=True) == [
        "a@x.org"
    ]
    assert ledger.statuses("2030-01") == {"a@x.org": SENDING}


def _a_dead_pid() -> int:
    proc = multiprocessing.get_context("spawn").Process(target=os.getpid)
    proc.start()
    proc.join()
    return proc.pid or 999999


def _claim_many(db: str, batch: str, out: multiprocessing.Queue[list[str]]) -> None:
    ledger = Ledger(db)
    run = ledger.start_run("2030-01")
    emails = [f"r{i}@x.org" for i in range(2000)]
    got: list[str] = []
    for start in range(0, len(emails), 50):
        got += ledger.claim(
            "2030-01", emails[start : start + 50], run_id=run, batch_id=f"{batch}{start}", variant="all"
        )
    out.put(got)


def test_concurrent_claims_from_two_processes_never_overlap(tmp_path: Path) -> None:
    db = url(tmp_path)
    Ledger(db)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_many, args=(db, name, queue)) for name in ("p", "q")]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert not set(results[0]) & set(results[1])
    assert len(results[0]) + len(results[1]) == 2000


def test_a_reused_pid_is_not_taken_for_the_dead_run(tmp_path: Path) -> None:
    ledger = Ledger(url(tmp_path))
    run = ledger.start_run("2030-01")
    ledger.claim("2030-01", ["a@x.org"], run_id=run, batch_id="b1", variant="all")
    # Same pid as a live process (ours), but that process started at another time.
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run).values(proc_start="1"))
    assert ledger.settle_orphans("2030-01") == ["a@x.org"]


def test_a_new_ledger_opens_while_another_process_writes_the_file(tmp_path: Path) -> None:
    # Two `send`s started together on a new database: one is still writing in
    # rollback mode when the other switches the file to WAL. SQLite refuses
    # that switch at once, busy timeout or not; the ledger must wait its turn.
    path = tmp_path / "state" / "ledger.db"
    path.parent.mkdir()
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE other (x)")
    writer.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: writer.execute("COMMIT")).start()
    ledger = Ledger(f"sqlite:///{path}")
    run = ledger.start_run("2030-01")
    assert ledger.claim("2030-01", ["a@x.org"], run_id=run, batch_id="b1", variant="all") == ["a@x.org"]
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
