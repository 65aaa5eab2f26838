"""A run's batches: claimed, built, handed over while the next is made ready, recorded.

The send loop claims a batch in the ledger and builds its payload, then
hands it to ``InFlight``, which posts it in a thread of its own and returns
at once; the loop claims and builds the next batch while the request is in
the air (the database, the provider and the network do their part outside
Python's lock), then hands that one over, which first waits for a free
connection (the answer to the oldest batch in the air) and records it.
``NEWSLETTER_SEND_CONNECTIONS`` (``Sender.connections``, 1 by default) is
how many requests may be in the air at once. So:

- a batch is still claimed before it is handed over; with one connection
  the provider sees one request at a time, in order;
- killed (SIGKILL), a run leaves at most connections + 1 batches
  ``sending``: those in the air and the one claimed and built behind them.
  The ledger's next run makes them in doubt; the outbox then finds which
  arrived, SendGrid's are reported (the last never left, but nothing tells
  it from the others);
- stopped by an exception (or Ctrl-C), a run releases the batch that never
  left (``release``) and waits for the answers to those in the air, and
  records them: nothing is left ``sending``. A second Ctrl-C during that
  wait leaves them ``sending``, in doubt for the next run, as a kill would.

While it waits for an answer ``InFlight`` beats the run's heartbeat, so a
request that takes long (SendGrid's retries) never looks like a dead run to
senders on other machines.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.audience.personalise import Addressee
from newsletter.content.model import Selection
from newsletter.delivery.backends.base import Backend, Envelope, Outcome, Recipient
from newsletter.delivery.ledger import FAILED, HEARTBEAT, IN_DOUBT, SENT, Ledger
from newsletter.errors import BatchFailed, BatchInDoubt
from newsletter.render.variant import Variant

if TYPE_CHECKING:  # send.py uses this module
    from newsletter.delivery.send import Sender, SendReport


@dataclass
class Ready:
    """A batch claimed and built, about to be handed over."""

    batch_id: str
    envelope: Envelope
    payload: Any
    readers: list[Addressee]  # claimed, and not refused by the backend
    size: int  # readers of the chunk it came from, for the progress bar


Answer = Outcome | BaseException  # what ``post`` returned, or raised


class InFlight:
    """Up to ``slots`` batches being handed over, each in a thread, while the caller prepares the next."""

    def __init__(
        self,
        post: Callable[[Envelope, Any], Outcome],
        settle: Callable[[Ready, Answer], None],
        beat: Callable[[], None],
        every: float,
        slots: int = 1,
    ) -> None:
        """``post`` hands a payload over; ``settle`` records an answer (in the caller's thread, in the
        order the batches left); ``beat`` renews the run's heartbeat every ``every`` seconds of waiting."""
        self._post, self._settle, self._beat, self._every = post, settle, beat, every
        self._slots = max(1, slots)
        self._flying: deque[tuple[threading.Thread, Ready, list[Answer]]] = deque()

    def hand_over(self, batch: Ready) -> None:
        """Once a slot is free (the oldest answer waited for and settled), send ``batch`` off.

        If this raises, ``batch`` did not leave: the caller releases its claim.
        """
        while len(self._flying) >= self._slots:
            self._settle_oldest()
        answer: list[Answer] = []
        thread = threading.Thread(target=self._run, args=(batch, answer), name="newsletter-handover", daemon=True)
        thread.start()
        # Only once started: a batch that never left must not be settled as if it had.
        self._flying.append((thread, batch, answer))

    def _run(self, batch: Ready, answer: list[Answer]) -> None:
        try:
            answer.append(self._post(batch.envelope, batch.payload))
        except BaseException as err:  # handed to the caller's thread, which records it
            answer.append(err)

    def _settle_oldest(self) -> None:
        thread, batch, answer = self._flying[0]
        while thread.is_alive():
            thread.join(self._every)
            if thread.is_alive():
                self._beat()
        self._flying.popleft()
        self._settle(batch, answer[0])

    def wait(self) -> None:
        """Wait for every batch in the air and settle each; then raise the first error settling raised."""
        error: BaseException | None = None
        while self._flying:
            try:
                self._settle_oldest()
            except BaseException as err:  # the others are still recorded
                error = error or err
        if error is not None:
            raise error


@dataclass
class Batches:
    """One run's batches: claimed and built in the send loop, settled when the answer is in."""

    sender: Sender
    ledger: Ledger
    report: SendReport
    run_id: str
    resend_in_doubt: bool
    progress: Callable[[int], None]

    def claim_and_build(self, chunk: Sequence[Addressee], variant: Variant) -> Ready | None:
        """The part of ``chunk`` this run could claim, built; None if nothing is left to hand over."""
        issue_id, backend, ledger, report = self.sender.issue.id, self.sender.backend, self.ledger, self.report
        batch_id = uuid.uuid4().hex
        keys = [r.key for r in chunk]
        claimed = set(
            ledger.claim(
                issue_id,
                keys,
                run_id=self.run_id,
                batch_id=batch_id,
                variant=variant.key,
                resend_in_doubt=self.resend_in_doubt,
            )
        )
        report.elsewhere += len(chunk) - len(claimed)
        mine = [r for r, key in zip(chunk, keys, strict=True) if key in claimed]
        if not mine:
            return None
        try:
            recipients, refused = deliverable(backend, [self.sender.recipient(r) for r in mine])
            if refused:
                ledger.record_failed(issue_id, batch_id, refused)
                report.failed.update({r.email: why for r in mine if (why := refused.get(r.key))})
                mine = [r for r in mine if r.key not in refused]
                if not mine:
                    return None
            envelope = self.sender.envelope(variant, batch_id)
            return Ready(batch_id, envelope, backend.build(envelope, recipients), mine, len(chunk))
        except BaseException:
            ledger.release(batch_id)  # nothing was handed over
            raise

    def settle(self, batch: Ready, answer: Answer) -> None:
        """Record the provider's answer for a batch handed over (in the send loop's thread)."""
        issue_id, ledger, report = self.sender.issue.id, self.ledger, self.report
        batch_id, mine = batch.batch_id, batch.readers
        self.progress(batch.size)
        # Written with the next claim: one commit a batch (see Ledger.record_batch).
        if isinstance(answer, BatchFailed):
            ledger.record_batch(issue_id, batch_id, FAILED, reason=answer.reason, with_next_claim=True)
            report.failed.update({r.email: answer.reason for r in mine})
        elif isinstance(answer, BatchInDoubt):
            ledger.record_batch(issue_id, batch_id, IN_DOUBT, reason=answer.reason, with_next_claim=True)
            report.in_doubt.update({r.email: answer.reason for r in mine})
        elif isinstance(answer, BaseException):
            reason = f"unexpected {type(answer).__name__} while handing over"
            ledger.record_batch(issue_id, batch_id, IN_DOUBT, reason=reason)
            raise answer
        else:
            if answer.failed:
                ledger.record_failed(issue_id, batch_id, answer.failed)
                by_key = {r.key: r.email for r in mine}
                report.failed.update({by_key[k]: why for k, why in answer.failed.items()})
            ledger.record_batch(issue_id, batch_id, SENT, message_id=answer.message_id, with_next_claim=True)
            report.sent += len(mine) - len(answer.failed)


class Dealer:
    """Readers dealt, as they stream in, into one open batch per selection; a full batch is handed over.

    At most one batch per variant waits in memory, whatever the audience.
    A dry run (``batches`` None) builds and checks each batch, and hands
    nothing over.
    """

    def __init__(
        self, sender: Sender, report: SendReport, batches: Batches | None, progress: Callable[[int], None]
    ) -> None:
        self.sender, self.report, self.batches, self.progress = sender, report, batches, progress
        self.size = sender.backend.batch_size
        self._open: dict[Selection, tuple[list[Addressee], list[str]]] = {}
        self._inflight = None
        if batches is not None:
            ledger = batches.ledger
            self._inflight = InFlight(
                sender.backend.post,
                batches.settle,
                lambda: ledger.heartbeat(batches.run_id),
                HEARTBEAT.total_seconds(),
                sender.connections,
            )

    def add(self, selection: Selection, reader: Addressee, new: bool) -> None:
        """One more reader for ``selection``; ``new``: the ledger has no row for them yet."""
        batch = self._open.get(selection)
        if batch is None:
            batch = self._open[selection] = ([], [])
        batch[0].append(reader)
        if new:
            batch[1].append(reader.key)
        if len(batch[0]) >= self.size:
            self._hand(selection)

    def finish(self, order: Sequence[Selection]) -> None:
        """Hand over what is left, the selections in ``order`` first, and wait for the last answer."""
        rank = {selection: i for i, selection in enumerate(order)}
        try:
            for selection in sorted(self._open, key=lambda s: rank.get(s, len(rank))):
                self._hand(selection)
        finally:
            self.close()

    def close(self) -> None:
        """Wait for the batches in the air and record their answers (also when the send stopped)."""
        if self._inflight is not None:
            self._inflight.wait()

    def _hand(self, selection: Selection) -> None:
        readers, new = self._open.pop(selection)
        variant = self.sender.variant(selection)
        self.report.variants[variant.key] = self.report.variants.get(variant.key, 0) + len(readers)
        if self.batches is None or self._inflight is None:
            self._check(readers, variant)
            return
        ledger = self.batches.ledger
        ledger.enqueue(self.sender.issue.id, new)  # held for the claim, which writes them as ours
        ready = self.batches.claim_and_build(readers, variant)
        if ready is None:
            self.progress(len(readers))
            return
        try:
            self._inflight.hand_over(ready)
        except BaseException:
            ledger.release(ready.batch_id)  # it never left
            raise

    def _check(self, readers: list[Addressee], variant: Variant) -> None:
        """A dry run's batch: built and validated, handed to nobody, written nowhere."""
        backend, report = self.sender.backend, self.report
        recipients, refused = deliverable(backend, [self.sender.recipient(r) for r in readers])
        report.failed.update({r.email: why for r in readers if (why := refused.get(r.key))})
        if recipients:
            backend.build(self.sender.envelope(variant, uuid.uuid4().hex), recipients)
        report.sent += len(recipients)
        self.progress(len(readers))


def deliverable(backend: Backend, recipients: list[Recipient]) -> tuple[list[Recipient], dict[str, str]]:
    """The recipients the backend can take, and why it cannot take the others (by key)."""
    refused = {r.key: why for r in recipients if (why := backend.refuse(r)) is not None}
    if not refused:
        return recipients, refused
    return [r for r in recipients if r.key not in refused], refused
