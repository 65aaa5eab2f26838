"""Batches on their way: claimed by one thread, posted by others, answers settled in the send loop.

Three stages run at once, each in a thread of its own:

- the send loop (the caller) streams, routes and builds batch N+2;
- the claiming thread claims batch N+1 in the ledger (one transaction,
  its commit waiting for the disk);
- a posting thread (one a connection) hands batch N over and waits for
  the provider's answer.

The database, the disk and the network each do their part outside
Python's lock, so the send loop's own work goes on meanwhile: with the
claim made in the send loop, its commit and statements came one after the
other with the building, half the loop's time.

The caller hands a batch over (``hand_over``) once fewer than
connections + 1 are on their way, waiting meanwhile for the oldest answer
and settling it: so at most connections + 1 batches are ever claimed and
unanswered (what a kill can leave in doubt), answers are settled in the
order the batches left, in the caller's thread, and each answer is written
with the claim that follows at once. (Building further ahead measured no
faster, held answers back behind a slow request, and cost memory.)

A stage that raises stops the pipeline (``stopping``): batches not yet
claimed are not, batches claimed and not yet posted are not posted (the
caller gives them back when it settles them), and posts under way finish.
A batch's expected failures (refused, in doubt) are answers, not raised.

While batches are on their way the process hands Python's lock round more
often (``quick_turns``): a stage back from the database or the network
takes it within half a millisecond, not the five a busy send loop would
otherwise keep it (each claim comes back for it six times; measured, the
send loop ~12% faster on SQLite).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Stage = Callable[[Any], None]
# Python's lock is handed over after this many seconds (Python's own: 0.005).
TURN = 0.0005


class Flight:
    """A batch on its way: what the stages found, once ``done`` is set."""

    __slots__ = ("batch", "claimed", "done", "error", "posted")

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.claimed = False  # the claiming stage ran to its end
        self.posted = False  # the posting stage started the request
        self.error: BaseException | None = None  # what a stage raised
        self.done = threading.Event()


class InFlight:
    """The claiming and posting threads of one run, and the batches on their way through them."""

    def __init__(
        self,
        claim: Callable[[Any], bool],
        post: Stage,
        settle: Callable[[Flight], None],
        beat: Callable[[], None],
        every: float,
        slots: int = 1,
    ) -> None:
        """``claim(batch)`` claims it (in the claiming thread) and tells whether anything is left to post;
        ``post(batch)`` hands it over and keeps the answer on it (in a posting thread); ``settle(flight)``
        records what happened (in the caller's thread, in the order the batches left); ``beat`` renews the
        run's heartbeat every ``every`` seconds of waiting."""
        self._claim, self._post, self._settle = claim, post, settle
        self._beat, self._every = beat, every
        self._slots = max(1, slots)
        self._flying: deque[Flight] = deque()
        self._to_claim: queue.SimpleQueue[Flight | None] = queue.SimpleQueue()
        self._to_post: queue.SimpleQueue[Flight | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.stopping = False

    def hand_over(self, batch: Any) -> None:
        """Send ``batch`` on its way once there is room (the oldest answers waited for and settled)."""
        while len(self._flying) > self._slots:
            self._settle_oldest()
        if not self._threads:
            self._start(self._claiming, "newsletter-claim")
            for _ in range(self._slots):
                self._start(self._posting, "newsletter-handover")
        flight = Flight(batch)
        self._flying.append(flight)
        self._to_claim.put(flight)

    def wait(self, *, stop: bool = False) -> None:
        """Settle every batch on its way; ``stop``: post no more of them. Then raise the first error
        settling raised. The threads end (a second call finds nothing to do)."""
        if stop:
            self.stopping = True
        error: BaseException | None = None
        while self._flying:
            try:
                self._settle_oldest()
            except BaseException as err:  # the others are still settled
                error = error or err
        if self._threads:
            self._to_claim.put(None)
            for _ in range(self._slots):
                self._to_post.put(None)
            self._threads.clear()
        if error is not None:
            raise error

    def _start(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _claiming(self) -> None:
        while (flight := self._to_claim.get()) is not None:
            if self.stopping:
                flight.done.set()
                continue
            try:
                more = self._claim(flight.batch)
                flight.claimed = True
            except BaseException as err:  # handed to the caller's thread, which raises it
                flight.error, self.stopping, more = err, True, False
            if more:
                self._to_post.put(flight)
            else:
                flight.done.set()

    def _posting(self) -> None:
        while (flight := self._to_post.get()) is not None:
            if not self.stopping:
                flight.posted = True
                try:
                    self._post(flight.batch)
                except BaseException as err:  # handed to the caller's thread, which records it
                    flight.error, self.stopping = err, True
            flight.done.set()

    def _settle_oldest(self) -> None:
        flight = self._flying[0]
        while not flight.done.wait(self._every):
            self._beat()
        self._flying.popleft()
        self._settle(flight)


@contextmanager
def quick_turns() -> Iterator[None]:
    """Python's lock handed round every ``TURN`` seconds meanwhile, for every thread of the process."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, TURN))
    try:
        yield
    finally:
        sys.setswitchinterval(before)
