"""Senders on several machines: `newsletter send` processes sharing one database split the readers.

Real processes, a real PostgreSQL server, the real ``sendgrid`` client
against the fake SendGrid (tests/fake_sendgrid.py), which answers each
request after a delay as a real one would, so that the senders' runs
overlap. What they must do: never send anyone twice; a sender killed with
SIGKILL leaves only readers reported in doubt; senders that cannot see each
other's processes (PID namespaces, as on two machines) take each other for
alive, and leave nobody in doubt.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from newsletter.db.schema import deliveries, runs
from newsletter.delivery import answers
from newsletter.delivery.ledger import IN_DOUBT, SENDING, SENT, Ledger

from conftest import Newsletter
from fake_sendgrid import FakeSendGrid

TOPICS = ["all", "anxiety", "Therapist Factors", "depression;outcomes", "training", "feedback;trauma"]
ISSUE = "2021-07"  # two summaries: "training" matches neither, so those readers are skipped


def readers(newsletter: Newsletter, n: int) -> set[str]:
    """``n`` readers in the subscriber file; the addresses of those the issue goes to."""
    rows = [f"reader{i}@example.org,Reader {i},{TOPICS[i % len(TOPICS)]},\n" for i in range(n)]
    newsletter.write("subscribers/sample.csv", "email,name,topics,status\n" + "".join(rows))  # in place of the samples
    return {f"reader{i}@example.org" for i in range(n) if TOPICS[i % len(TOPICS)] != "training"}


@pytest.fixture
def fakes() -> Iterator[Callable[..., FakeSendGrid]]:
    started: list[FakeSendGrid] = []

    def start(latency: float, *faults: str | None) -> FakeSendGrid:
        fake = FakeSendGrid(record=False, latency=latency)
        fake.faults.extend(faults)  # type: ignore[arg-type]  # None: a request answered as usual
        started.append(fake.start())
        return fake

    yield start
    for fake in started:
        fake.stop()


def sender(
    newsletter: Newsletter, database: str, fake: FakeSendGrid, *, prefix: list[str] | None = None
) -> subprocess.Popen[str]:
    """`newsletter send ISSUE --yes` in a process of its own (under ``prefix``: another namespace)."""
    env = {
        **os.environ,
        **fake.settings(NEWSLETTER_ROOT=str(newsletter.root), NEWSLETTER_DATABASE_URL=database),
    }
    command = [sys.executable, "-m", "newsletter", "send", ISSUE, "--yes"]
    return subprocess.Popen(
        [*(prefix or []), *command], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """Kill the senders still running (a test that failed midway leaves none behind)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def by_run(ledger: Ledger) -> dict[str, Counter[str]]:
    """Run id → its readers per status."""
    with ledger.engine.connect() as conn:
        status = answers.status()  # a row's own, or `sent` from its batch's answer
        rows = conn.execute(
            select(deliveries.c.run_id, status, func.count())
            .select_from(answers.joined())
            .where(deliveries.c.issue_id == ISSUE, deliveries.c.run_id.is_not(None))
            .group_by(deliveries.c.run_id, status)
        ).all()
    found: dict[str, Counter[str]] = {}
    for run_id, status, count in rows:
        found.setdefault(run_id, Counter())[status] = count
    return found


def run_of(ledger: Ledger, pid: int) -> str:
    with ledger.engine.connect() as conn:
        return str(conn.execute(select(runs.c.run_id).where(runs.c.pid == pid)).scalar_one())


def test_four_senders_split_the_readers_and_a_killed_one_leaves_only_doubt(
    samples: Newsletter, postgres_url: str, fakes: Callable[..., FakeSendGrid]
) -> None:
    matched = readers(samples, 40_000)
    Ledger(postgres_url).close()  # the database, made as any earlier command would have
    ledger = Ledger(postgres_url)
    # The victim's provider answers its first request, then holds the second:
    # it is killed with that request in the air, while the three others send.
    shared, victims = fakes(0.5), fakes(0.5, None, "hold")
    procs = [sender(samples, postgres_url, victims)]
    victim, others = procs[0], procs[1:]
    try:
        wait_for(lambda: victims.holding.is_set() or victim.poll() is not None, 120, "the victim's second request")
        assert victims.holding.is_set(), victim.communicate()
        others += [sender(samples, postgres_url, shared) for _ in range(3)]
        procs += others
        wait_for(lambda: len(by_run(ledger)) == 4 or any(p.poll() is not None for p in others), 120, "all four sending")
        mine = by_run(ledger)[run_of(ledger, victim.pid)]
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        # The kill landed mid-send: its first batch answered and recorded, the
        # second accepted by the provider with no answer, a third claimed and
        # built behind it, never handed over; the other senders still going.
        assert victims.requests_accepted == 2 and mine[SENT] == 1000 and mine[SENDING] == 2000, mine
        assert all(proc.poll() is None for proc in others)
        so_far = ledger.counts(ISSUE)
        assert so_far.get(SENT, 0) + so_far.get(SENDING, 0) < len(matched), "the others had nothing left to send"
        outputs = [proc.communicate(timeout=300) for proc in others]
    finally:
        stop(procs)
    assert [proc.returncode for proc in others] == [0, 0, 0], outputs

    # Every other sender sent some of the readers, and none of the same ones.
    sent_by = {run: counts[SENT] for run, counts in by_run(ledger).items()}
    assert len(sent_by) == 4 and all(sent_by.values()), sent_by

    rerun = sender(samples, postgres_url, shared)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 1, err  # not ok: readers in doubt
    in_doubt = {row.email for row in ledger.rows(ISSUE, [IN_DOUBT])}
    assert re.search(rf"│ in doubt\s+│ {len(in_doubt)}\s+│", out), out
    assert len(in_doubt) == 2000  # the batch in the air and the one behind it, both the victim's

    delivered = shared.delivered + victims.delivered
    assert max(delivered.values()) == 1  # nobody twice
    assert set(delivered) <= matched
    assert matched - set(delivered) <= in_doubt  # everyone else exactly once
    assert len(in_doubt & set(delivered)) == 1000  # the held request had arrived: sent once, reported in doubt
    assert ledger.counts(ISSUE) == {SENT: len(matched) - 2000, IN_DOUBT: 2000, "skipped": 40_000 - len(matched)}
    ledger.close()


def in_namespaces(hostname: str | None) -> list[str]:
    """A prefix running a command in PID and mount namespaces of its own, and a host name of its own if given.

    It is pid 1 there, as the other sender is in its own: neither can see
    the other's processes, as on two machines (or in two containers).
    """
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed: `bash .ci/run` installs what the tests need"
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    if hostname is None:
        return [unshare, *user, "--pid", "--fork", "--mount-proc", "--"]
    return [
        unshare,
        *user,
        "--pid",
        "--fork",
        "--mount-proc",
        "--uts",
        "--",
        "sh",
        "-c",
        f'hostname {hostname} && exec "$@"',
        "sh",
    ]


@pytest.mark.parametrize(
    ("database_url", "hostnames"),
    [
        pytest.param("postgresql", ("sender-a.example.org", "sender-b.example.org"), id="two-machines"),
        pytest.param("postgresql", (None, None), id="two-containers-one-host-name"),
        pytest.param("sqlite", (None, None), id="two-containers-one-sqlite-file"),
    ],
    indirect=["database_url"],
)
def test_senders_that_cannot_see_each_others_processes_send_nobody_twice_and_leave_no_doubt(
    samples: Newsletter,
    database_url: str,
    fakes: Callable[..., FakeSendGrid],
    hostnames: tuple[str | None, str | None],
) -> None:
    matched = readers(samples, 20_000)
    Ledger(database_url).close()
    ledger = Ledger(database_url)
    fake = fakes(0.2)
    procs = [sender(samples, database_url, fake, prefix=in_namespaces(hostnames[0]))]
    try:
        # The second starts while the first has a batch in the air, claimed and unanswered.
        wait_for(lambda: fake.requests_accepted >= 1, 120, "the first sender's first request")
        procs.append(sender(samples, database_url, fake, prefix=in_namespaces(hostnames[1])))
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        stop(procs)
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    with ledger.engine.connect() as conn:
        seen = conn.execute(select(runs.c.host, runs.c.pid, runs.c.pid_space)).all()
    assert [pid for _, pid, _ in seen] == [1, 1]  # each was pid 1 of its own namespace
    assert len({space for _, _, space in seen}) == 2
    assert {host for host, _, _ in seen} == ({os.uname().nodename} if hostnames[0] is None else set(hostnames))
    assert max(fake.delivered.values()) == 1 and set(fake.delivered) == matched
    assert ledger.counts(ISSUE) == {SENT: len(matched), "skipped": 20_000 - len(matched)}  # nobody in doubt
    assert all(counts[SENT] for counts in by_run(ledger).values()) and len(by_run(ledger)) == 2
    ledger.close()
