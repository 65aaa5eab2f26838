"""The ledger on a real SQLite file and a real PostgreSQL database: claims never overlap, dead runs leave doubt."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from newsletter.db.schema import deliveries, runs, sent_batches, skips
from newsletter.delivery.ledger import FAILED, IN_DOUBT, QUEUED, RUN_LEASE, SENDING, SENT, SKIPPED, Ledger
from newsletter.support.processes import pid_space


def claim(ledger: Ledger, emails: list[str], run: str, batch: str, **kw: bool) -> list[str]:
    return ledger.claim("2030-01", emails, run_id=run, batch_id=batch, variant="all", **kw)


def test_claim_is_exclusive_and_sent_is_final(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org", "b@x.org", "c@x.org"])
    assert ledger.counts("2030-01") == {QUEUED: 3}
    assert sorted(claim(ledger, ["a@x.org", "b@x.org"], run, "b1")) == ["a@x.org", "b@x.org"]
    assert claim(ledger, ["a@x.org", "c@x.org"], run, "b2") == ["c@x.org"]
    ledger.record_batch("2030-01", "b1", SENT, message_id="m1")
    ledger.record_batch("2030-01", "b2", FAILED, reason="boom")
    assert ledger.counts("2030-01") == {SENT: 2, FAILED: 1}
    # failed is retried, sent never; queueing again changes nothing
    ledger.enqueue("2030-01", ["a@x.org", "c@x.org"])
    assert claim(ledger, ["a@x.org", "c@x.org"], run, "b3") == ["c@x.org"]
    # another issue is independent; a reader with no row is not claimed (a claim never inserts)
    assert ledger.claim("2030-02", ["a@x.org"], run_id=run, batch_id="b4", variant="all") == []
    ledger.enqueue("2030-02", ["a@x.org"])
    assert ledger.claim("2030-02", ["a@x.org"], run_id=run, batch_id="b4", variant="all") == ["a@x.org"]


def test_skipped_readers_are_claimable_and_never_hide_a_sent_one(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org", "c@x.org"])
    claim(ledger, ["a@x.org"], run, "b1")
    ledger.record_batch("2030-01", "b1", SENT)
    # the whole list skipped: a (sent already), b, and c, queued by a run, then left its topics
    sheet = {"unsubscribed": ["a@x.org"], "no match": ["b@x.org", "c@x.org"]}
    ledger.record_skipped("2030-01", "", None, sheet, stale=["c@x.org"])
    assert ledger.statuses("2030-01") == {"a@x.org": SENT}  # skipped counts as "no row" for sending
    assert [(r.email, r.status, r.reason) for r in ledger.rows("2030-01", [SKIPPED, SENT])] == [
        ("a@x.org", SENT, None),
        ("b@x.org", SKIPPED, "no match"),
        ("c@x.org", SKIPPED, "no match"),  # its queued row is gone
    ]
    assert ledger.rows("2030-01", [SKIPPED])[0].updated_at.tzinfo is not None
    # not a row: to a claim, a reader skipped is one with no row yet
    taken = ledger.claim("2030-01", ["b@x.org"], run_id=run, batch_id="b2", variant="all", new=["b@x.org"])
    assert taken == ["b@x.org"]
    assert ledger.counts("2030-01") == {SENT: 1, SENDING: 1, SKIPPED: 1}
    assert ledger.counts("2030-02") == {}


def test_a_range_noted_again_replaces_what_was_noted_there_and_keeps_the_rest(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.record_skipped("2030-01", "", "m", {"no match": ["a@x.org", "b@x.org", "k@x.org"]})
    ledger.record_skipped("2030-01", "m", None, {"no match": ["p@x.org", "z@x.org"], "unsubscribed": ["q@x.org"]})

    def noted() -> list[tuple[str, str | None]]:
        return [(r.email, r.reason) for r in ledger.rows("2030-01", [SKIPPED])]

    # a later run, its chunks cut elsewhere: (c, r] now holds k alone, for another reason
    ledger.record_skipped("2030-01", "c@x.org", "r", {"unsubscribed": ["k@x.org"]})
    assert noted() == [
        ("a@x.org", "no match"),
        ("b@x.org", "no match"),
        ("k@x.org", "unsubscribed"),
        ("z@x.org", "no match"),
    ]
    with ledger.engine.connect() as conn:  # the ranges still do not overlap
        ranges = conn.execute(select(skips.c.after_key, skips.c.last_key).order_by(skips.c.after_key)).all()
    assert ranges == [("", "c@x.org"), ("c@x.org", "r"), ("r", None)]
    # a range to the end of the list, with nobody skipped in it
    ledger.record_skipped("2030-01", "a@x.org", None, {})
    assert noted() == [("a@x.org", "no match")]
    assert ledger.counts("2030-01") == {SKIPPED: 1}


def test_addresses_refused_in_an_accepted_batch_are_failed_and_retried(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org", "b@x.org"])
    claim(ledger, ["a@x.org", "b@x.org"], run, "b1")
    ledger.record_failed("2030-01", "b1", {"b@x.org": "already in the outbox"})
    ledger.record_batch("2030-01", "b1", SENT, message_id="m1")  # the rest of the batch
    assert ledger.statuses("2030-01") == {"a@x.org": SENT, "b@x.org": FAILED}
    assert [(r.email, r.reason) for r in ledger.rows("2030-01", [FAILED])] == [("b@x.org", "already in the outbox")]
    assert claim(ledger, ["a@x.org", "b@x.org"], run, "b2") == ["b@x.org"]


def test_a_released_claim_is_queued_again(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org"])
    claim(ledger, ["a@x.org"], run, "b1")
    ledger.release("b1")
    assert ledger.statuses("2030-01") == {"a@x.org": QUEUED}
    assert claim(ledger, ["a@x.org"], run, "b2") == ["a@x.org"]


def test_rows_of_a_dead_run_become_in_doubt(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org", "z@x.org"])
    claim(ledger, ["z@x.org"], run, "b0")
    ledger.record_batch("2030-01", "b0", SENT, message_id="m0")  # answered: its row stays `sending`
    claim(ledger, ["a@x.org"], run, "b1")
    assert ledger.settle_orphans("2030-01") == []  # our own run is alive
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run).values(pid=_a_dead_pid()))
    assert ledger.settle_orphans("2030-01") == ["a@x.org"]
    assert ledger.statuses("2030-01") == {"a@x.org": IN_DOUBT, "z@x.org": SENT}
    assert [(r.email, r.status, r.message_id) for r in ledger.rows("2030-01", [SENT, IN_DOUBT])] == [
        ("a@x.org", IN_DOUBT, None),
        ("z@x.org", SENT, "m0"),
    ]
    other = ledger.start_run("2030-01")
    assert claim(ledger, ["a@x.org"], other, "b2") == []
    assert claim(ledger, ["a@x.org"], other, "b3", resend_in_doubt=True) == ["a@x.org"]
    assert ledger.statuses("2030-01") == {"a@x.org": SENDING, "z@x.org": SENT}


def _a_dead_pid() -> int:
    proc = multiprocessing.get_context("spawn").Process(target=os.getpid)
    proc.start()
    proc.join()
    return proc.pid or 999999


def test_a_run_elsewhere_is_judged_by_its_heartbeat_not_by_our_pids(database_url: str) -> None:
    # Another machine, or a container with its own PID namespace under our
    # very host name: its pid means nothing here (pid 1 is alive in every
    # namespace; a dead pid here may be its live one). Only silence kills it.
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org"])
    claim(ledger, ["a@x.org"], run, "b1")
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).values(pid=_a_dead_pid(), pid_space=f"{pid_space()}-elsewhere"))
    assert ledger.settle_orphans("2030-01") == []  # heard from within the lease: alive
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).values(heartbeat_at=datetime.now(UTC) - RUN_LEASE * 1.1))
    assert ledger.settle_orphans("2030-01") == ["a@x.org"]


def test_heartbeats_are_judged_by_the_databases_clock_not_the_senders(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Senders on several machines: one whose clock runs an hour fast must
    # not take a run elsewhere, heard from a moment ago, for a dead one.
    import newsletter.delivery.ledger as module

    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org"])
    claim(ledger, ["a@x.org"], run, "b1")
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).values(pid_space="elsewhere"))
    monkeypatch.setattr(module, "_now", lambda: datetime.now(UTC) + timedelta(hours=1))
    assert ledger.settle_orphans("2030-01") == []


def test_a_run_of_a_release_before_pid_spaces_is_judged_by_host_name(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org", "b@x.org"])
    claim(ledger, ["a@x.org"], run, "b1")
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).values(pid_space=None, pid=_a_dead_pid()))
    assert ledger.settle_orphans("2030-01") == ["a@x.org"]  # this host, pid gone
    claim(ledger, ["b@x.org"], run, "b2", resend_in_doubt=True)
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).values(host="elsewhere.example.org", finished_at=None))
    assert ledger.settle_orphans("2030-01") == []  # another host, heard from lately


def test_heartbeat_keeps_a_run_elsewhere_alive(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org"])
    claim(ledger, ["a@x.org"], run, "b1")
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).values(pid_space="elsewhere", heartbeat_at=datetime.now(UTC) - RUN_LEASE * 1.1))
    ledger.heartbeat(run)
    assert ledger.settle_orphans("2030-01") == []


def _claim_many(db: str, batch: str, out: multiprocessing.Queue[list[str]]) -> None:
    ledger = Ledger(db)
    run = ledger.start_run("2030-01")
    emails = [f"r{i}@x.org" for i in range(2000)]
    ledger.enqueue("2030-01", emails)
    got: list[str] = []
    for start in range(0, len(emails), 50):
        got += ledger.claim(
            "2030-01", emails[start : start + 50], run_id=run, batch_id=f"{batch}{start}", variant="all"
        )
    out.put(got)


def test_concurrent_claims_from_two_processes_never_overlap(database_url: str) -> None:
    Ledger(database_url).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_many, args=(database_url, name, queue)) for name in ("p", "q")]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert not set(results[0]) & set(results[1])
    assert len(results[0]) + len(results[1]) == 2000


def test_a_reused_pid_is_not_taken_for_the_dead_run(database_url: str) -> None:
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    ledger.enqueue("2030-01", ["a@x.org"])
    claim(ledger, ["a@x.org"], run, "b1")
    # Same pid as a live process (ours), but that process started at another time.
    with ledger.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run).values(proc_start="1"))
    assert ledger.settle_orphans("2030-01") == ["a@x.org"]


def test_a_claim_takes_what_no_one_holds_without_waiting_for_claims_in_progress(postgres_url: str) -> None:
    # PostgreSQL only: SQLite has one writer at a time, so there claims take turns by design.
    ledger = Ledger(postgres_url)
    run = ledger.start_run("2030-01")
    emails = ["a@x.org", "b@x.org", "c@x.org"]
    ledger.enqueue("2030-01", emails)
    ledger.flush()  # queued rows, as a run stopped before claiming them leaves them
    other = ledger.engine.connect()
    held = other.begin()  # another sender's claim of a and b, not yet committed
    other.execute(
        update(deliveries)
        .where(deliveries.c.email.in_(["a@x.org", "b@x.org"]))
        .values(status=SENDING, batch_id="theirs", run_id="theirs")
    )
    got: list[list[str]] = []
    mine = threading.Thread(target=lambda: got.append(claim(ledger, emails, run, "mine")), daemon=True)
    started = time.monotonic()
    mine.start()
    mine.join(timeout=10)
    waited = time.monotonic() - started
    assert got == [["c@x.org"]], "the claim waited for the other one"
    assert waited < 2
    held.rollback()  # the other sender gave up before handing its batch over
    other.close()
    assert claim(ledger, emails, run, "again") == ["a@x.org", "b@x.org"]
    with ledger.engine.connect() as conn:
        owners = dict(conn.execute(select(deliveries.c.email, deliveries.c.batch_id)).all())
    assert owners == {"a@x.org": "again", "b@x.org": "again", "c@x.org": "mine"}


def test_new_readers_another_sender_inserted_since_are_left_to_it_and_held_answers_kept(database_url: str) -> None:
    # Both senders streamed a@ and b@ with no row; the other claimed them first.
    # (On PostgreSQL the first try is a plain INSERT that fails, then the claim is made again.)
    mine, other = Ledger(database_url), Ledger(database_url)
    run, theirs = mine.start_run("2030-01"), other.start_run("2030-01")
    assert claim(mine, ["z@x.org"], run, "before", new=["z@x.org"]) == ["z@x.org"]
    mine.record_batch("2030-01", "before", SENT, message_id="m0", with_next_claim=True)
    assert claim(other, ["a@x.org", "b@x.org"], theirs, "t1", new=["a@x.org", "b@x.org"]) == ["a@x.org", "b@x.org"]
    emails = ["a@x.org", "b@x.org", "c@x.org"]
    assert claim(mine, emails, run, "m1", new=emails) == ["c@x.org"]
    # and the next one, with new readers no one has
    assert claim(mine, ["d@x.org", "e@x.org"], run, "m2", new=["d@x.org", "e@x.org"]) == ["d@x.org", "e@x.org"]
    with mine.engine.connect() as conn:
        owners = dict(conn.execute(select(deliveries.c.email, deliveries.c.batch_id)).all())
        # the answer held for the claim that was made again, written by it (not left for a flush)
        answered = conn.execute(select(sent_batches.c.batch_id, sent_batches.c.message_id)).all()
    assert owners == {
        "a@x.org": "t1",
        "b@x.org": "t1",
        "c@x.org": "m1",
        "d@x.org": "m2",
        "e@x.org": "m2",
        "z@x.org": "before",
    }
    assert answered == [("before", "m0")]
    assert mine.statuses("2030-01") == {e: SENT if e == "z@x.org" else SENDING for e in owners}
    other.close()
    mine.close()


def test_a_sender_that_finds_another_sending_the_issue_claims_its_readers_without_an_error(database_url: str) -> None:
    # A plain INSERT of a reader the other has would fail, and PostgreSQL's log
    # would name the reader in the error: a run that starts while another is
    # going inserts with ON CONFLICT from its first claim.
    other, mine = Ledger(database_url), Ledger(database_url)
    theirs = other.start_run("2030-01")
    run = mine.start_run("2030-01")
    errors: list[BaseException] = []
    event.listen(mine.engine, "handle_error", lambda context: errors.append(context.original_exception))
    assert claim(other, ["a@x.org", "b@x.org"], theirs, "t1", new=["a@x.org", "b@x.org"]) == ["a@x.org", "b@x.org"]
    emails = ["a@x.org", "b@x.org", "c@x.org"]
    assert claim(mine, emails, run, "m1", new=emails) == ["c@x.org"]
    assert errors == []
    other.close()
    mine.close()


def test_a_claim_of_readers_another_claim_is_inserting_waits_for_it_then_leaves_them(postgres_url: str) -> None:
    # Both senders found a@ with no row: the unique index lets one insert it. The
    # other waits for that claim's commit (milliseconds, never a request), then takes the rest.
    ledger = Ledger(postgres_url)
    run = ledger.start_run("2030-01")
    other = ledger.engine.connect()
    held = other.begin()
    other.execute(
        deliveries.insert().values(
            issue_id="2030-01",
            email="a@x.org",
            status=SENDING,
            batch_id="theirs",
            run_id="theirs",
            updated_at=datetime.now(UTC),
        )
    )
    got: list[list[str]] = []

    def claim_new() -> None:  # as a send claims readers it found with no row
        emails = ["a@x.org", "b@x.org"]
        got.append(ledger.claim("2030-01", emails, run_id=run, batch_id="mine", variant="all", new=emails))

    mine = threading.Thread(target=claim_new, daemon=True)
    mine.start()
    mine.join(timeout=0.5)
    assert mine.is_alive() and got == []  # waiting for the other claim's commit
    held.commit()
    other.close()
    mine.join(timeout=10)
    assert got == [["b@x.org"]]
    with ledger.engine.connect() as conn:
        owners = dict(conn.execute(select(deliveries.c.email, deliveries.c.batch_id)).all())
    assert owners == {"a@x.org": "theirs", "b@x.org": "mine"}


def test_reports_read_beside_a_write_in_progress_without_waiting_for_it(database_url: str) -> None:
    # `newsletter status` during a send: its reads must neither queue behind a
    # claim nor hold the next one up. On SQLite every transaction of the
    # ledger's engine takes the write lock first (BEGIN IMMEDIATE).
    ledger = Ledger(database_url)
    run = ledger.start_run("2030-01")
    assert claim(ledger, ["a@x.org", "b@x.org"], run, "b1", new=["a@x.org", "b@x.org"]) == ["a@x.org", "b@x.org"]
    ledger.record_batch("2030-01", "b1", SENT, message_id="m1")
    ledger.flush()
    found: list[object] = []

    def report() -> None:
        found.append(ledger.counts("2030-01"))
        found.append([row.email for row in ledger.rows("2030-01", [SENT])])

    with ledger.engine.connect() as writer:  # a claim under way: holds the lock, not yet committed
        writer.execute(update(deliveries).where(deliveries.c.email == "a@x.org").values(status=FAILED))
        reader = threading.Thread(target=report)
        reader.start()
        reader.join(timeout=10)
        done_while_writing = not reader.is_alive()
        writer.rollback()
    reader.join()
    assert done_while_writing
    assert found == [{SENT: 2}, ["a@x.org", "b@x.org"]]  # what was committed
    ledger.finish_run(run)
    ledger.close()


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
    ledger.enqueue("2030-01", ["a@x.org"])
    assert claim(ledger, ["a@x.org"], run, "b1") == ["a@x.org"]
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    "url, message",
    [
        # postgresql:// is psycopg 3, the driver of the extra, not SQLAlchemy's default psycopg2
        ("postgresql://nobody@/nowhere?host=/nonexistent", "cannot open the ledger database: OperationalError: "),
        ("mysql://x/y", "NEWSLETTER_DATABASE_URL needs a driver that is not installed: MySQLdb"),
        ("mysql+nodriver://x/y", "NEWSLETTER_DATABASE_URL is not usable: NoSuchModuleError"),
    ],
)
def test_an_unusable_database_url_is_a_config_error(url: str, message: str) -> None:
    from newsletter.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        Ledger(url)
    assert str(raised.value).startswith(message)
