"""The send loop builds batches while the one before is claimed and the one before that posted: what a stop leaves.

Whatever stops a run, every reader is accounted for: a batch claimed but
never handed over is given back (queued again), and the batch in the air is
waited for and its answer recorded. Nothing is left ``sending``, so nothing
turns into doubt. (A kill is different: tests/test_send.py.)
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from newsletter.content.workspace import Workspace
from newsletter.delivery.backends.base import Envelope, Outcome
from newsletter.delivery.backends.null import NullBackend
from newsletter.delivery.ledger import IN_DOUBT, QUEUED, SENDING, SENT, Ledger
from newsletter.delivery.links import Links
from newsletter.delivery.send import Sender, SendReport, plan, send_issue
from newsletter.errors import BatchFailed
from newsletter.render.renderer import Renderer
from newsletter.settings import load_settings, with_sample_defaults

from conftest import Newsletter

HEADER = "email,name,topics,status\n"


class Scripted(NullBackend):
    """Batches of 10; a post takes a while, so the next batches are claimed and built meanwhile."""

    batch_size = 10

    def __init__(
        self,
        *,
        build_fails_at: int = 0,
        post_fails_at: int = 0,
        error: BaseException | None = None,
        fail_once: Callable[[], bool] = lambda: True,
    ) -> None:
        self.fail_once = fail_once  # the build that fails waits for this first
        self.interval = 0.0  # Python's switch interval during the last post
        self.builds = self.posts = 0
        self.build_fails_at, self.post_fails_at = build_fails_at, post_fails_at
        self.error = error or RuntimeError("boom")
        self.in_air: list[int] = []  # how many posts were running when each build started
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def build(self, envelope: Envelope, recipients: Any) -> Any:
        # After the first, a batch is built while the one before it is posted;
        # give that thread a moment to start (a loop that built only after an
        # answer would find nothing posted, however long it waited).
        deadline = time.monotonic() + (2 if self.builds else 0)
        while self.running == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        self.builds += 1
        self.in_air.append(self.running)
        if self.builds == self.build_fails_at:
            while not self.fail_once() and time.monotonic() < deadline + 5:
                time.sleep(0.001)
            raise self.error
        return super().build(envelope, recipients)

    def post(self, envelope: Envelope, payload: Any) -> Outcome:
        self.interval = sys.getswitchinterval()
        with self.lock:
            self.posts += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
            number = self.posts
        try:
            time.sleep(0.2)
            if number == self.post_fails_at:
                raise self.error
            return super().post(envelope, payload)
        finally:
            with self.lock:
                self.running -= 1


def run(
    newsletter: Newsletter, backend: Scripted, readers: int = 45, connections: int = 1
) -> tuple[SendReport | None, Ledger]:
    newsletter.issue()
    newsletter.write("subscribers/r.csv", HEADER + "".join(f"r{i}@example.org,R{i},all,\n" for i in range(readers)))
    settings, _ = with_sample_defaults(load_settings(newsletter.root))
    ws = Workspace(settings)
    issue = ws.load("2030-01")
    sender = Sender(issue, backend, Renderer(settings), Links(settings), settings.from_address, connections=connections)
    ledger = Ledger(settings.ledger_url)
    audience, _ = plan(ws, issue, engine=ledger.engine)
    return send_issue(sender, audience, ledger), ledger


def test_the_next_batch_is_built_while_a_request_is_in_the_air(newsletter: Newsletter, use_database: str) -> None:
    backend = Scripted()
    before = sys.getswitchinterval()
    report, ledger = run(newsletter, backend)
    # Python's lock handed round more often while batches are on their way, and only then
    assert backend.interval <= 0.0005 < before and sys.getswitchinterval() == before
    assert report is not None and report.sent == 45 and ledger.counts("2030-01") == {SENT: 45}
    assert backend.in_air == [0, 1, 1, 1, 1]  # every build but the first overlapped a post
    assert backend.posts == 5 and backend.peak == 1  # one request at a time


def test_two_connections_keep_two_requests_in_the_air_and_record_every_answer(
    newsletter: Newsletter, use_database: str
) -> None:
    backend = Scripted()
    report, ledger = run(newsletter, backend, connections=2)
    assert report is not None and report.sent == 45 and ledger.counts("2030-01") == {SENT: 45}
    assert backend.posts == 5 and backend.peak == 2


def test_with_two_connections_a_failure_still_records_the_other_answer_and_gives_back_the_batch_behind(
    newsletter: Newsletter, use_database: str
) -> None:
    backend = Scripted(post_fails_at=2)
    with pytest.raises(RuntimeError, match="boom"):
        run(newsletter, backend, connections=2)
    ledger = Ledger(use_database)
    # 1 and 3 answered; 2 failed in the air (in doubt); 4 was claimed and built behind them, and never left
    assert ledger.counts("2030-01") == {SENT: 20, IN_DOUBT: 10, QUEUED: 10}
    assert backend.posts == 3


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_a_stop_while_building_gives_the_claim_behind_back_and_records_the_batch_in_the_air(
    newsletter: Newsletter, use_database: str, error: BaseException
) -> None:
    watch = Ledger(use_database)
    # Fails once batch 2 is claimed (batch 1 is in the air meanwhile): both ``sending``.
    backend = Scripted(build_fails_at=3, error=error, fail_once=lambda: watch.counts("2030-01").get(SENDING) == 20)
    with pytest.raises(type(error)):
        run(newsletter, backend)
    ledger = Ledger(use_database)
    # batch 1 went and is recorded; 2 was claimed behind it, never left, and is queued again;
    # 3 failed to build, before its claim: its readers and those after have no row
    # (a batch's rows are written at its claim)
    assert ledger.counts("2030-01") == {SENT: 10, QUEUED: 10}


def test_a_failure_handing_over_is_in_doubt_and_the_batch_behind_it_is_given_back(
    newsletter: Newsletter, use_database: str
) -> None:
    backend = Scripted(post_fails_at=2)
    with pytest.raises(RuntimeError, match="boom"):
        run(newsletter, backend)
    ledger = Ledger(use_database)
    # 2 may or may not have reached the provider; 3 was claimed and built behind it, and never left
    assert ledger.counts("2030-01") == {SENT: 10, IN_DOUBT: 10, QUEUED: 10}
    assert backend.posts == 2


def test_a_refused_batch_does_not_stop_the_ones_behind_it(newsletter: Newsletter, use_database: str) -> None:
    class RefusesTheSecond(Scripted):
        def post(self, envelope: Envelope, payload: Any) -> Outcome:
            outcome = super().post(envelope, payload)
            if self.posts == 2:
                raise BatchFailed("refused")
            return outcome

    report, ledger = run(newsletter, RefusesTheSecond())
    assert report is not None and report.sent == 35 and len(report.failed) == 10
    assert ledger.counts("2030-01") == {SENT: 35, "failed": 10}
