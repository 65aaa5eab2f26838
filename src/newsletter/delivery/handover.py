"""A run's batches: built in the send loop, claimed and handed over in threads of their own, recorded.

The send loop deals the readers into one open batch per variant (``Dealer``);
a full batch is built (the readers' links, the payload) and sent on its way
(``pipeline.InFlight``): the claiming thread claims it in the ledger, a
posting thread hands it over, and the send loop, building the batches
behind it meanwhile, records each answer in turn (``Batches.settle``).
``NEWSLETTER_SEND_CONNECTIONS`` (``Sender.connections``, 1 by default) is
how many requests may be in the air at once. So:

- a batch is still claimed before it is handed over; with one connection
  the provider sees one request at a time, in order;
- a batch is built for all its readers before its claim; the few that
  another sender holds are left out after it (the payload built again);
- killed (SIGKILL), a run leaves at most connections + 1 batches
  ``sending``: those in the air and the one claimed behind them. The
  ledger's next run makes them in doubt; the outbox then finds which
  arrived, SendGrid's are reported (the last never left, but nothing tells
  it from the others);
- stopped by an exception (or Ctrl-C), a run gives back (``release``) the
  batch claimed that never left and waits for the answers to those in the
  air, and records them: nothing is left ``sending``. A second Ctrl-C
  during that wait leaves them ``sending``, in doubt for the next run, as a
  kill would.

While it waits for an answer the send loop beats the run's heartbeat, so a
request that takes long (SendGrid's retries) never looks like a dead run to
senders on other machines.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.audience.personalise import Addressee
from newsletter.content.model import Selection
from newsletter.delivery.backends.base import Backend, Envelope, Outcome, Recipient
from newsletter.delivery.ledger import FAILED, HEARTBEAT, IN_DOUBT, SENT, Ledger
from newsletter.delivery.pipeline import Flight, InFlight
from newsletter.errors import BatchFailed, BatchInDoubt
from newsletter.render.variant import Variant

if TYPE_CHECKING:  # send.py uses this module
    from newsletter.delivery.send import Sender, SendReport


@dataclass
class Ready:
    """A batch built, on its way: claimed, then handed over, then settled."""

    batch_id: str
    variant: str  # its key
    envelope: Envelope
    readers: list[Addressee]  # as dealt
    new: list[str]  # the keys of those the ledger has no row for
    recipients: list[Recipient]  # those the backend takes (after the claim: and that are ours)
    refused: dict[str, str]  # key -> why the backend cannot take them
    payload: Any  # for ``recipients``; None if there are none
    claimed: frozenset[str] = frozenset()  # the keys the claim made ours
    answer: Outcome | BatchFailed | BatchInDoubt | None = None


@dataclass
class Batches:
    """One run's batches: built in the send loop, claimed and posted by the pipeline, settled in the loop."""

    sender: Sender
    ledger: Ledger
    report: SendReport
    run_id: str
    resend_in_doubt: bool
    progress: Callable[[int], None]

    def build(self, readers: list[Addressee], new: list[str], variant: Variant) -> Ready:
        """The batch of ``readers`` (``new``: the keys with no ledger row), built for the backend."""
        sender, backend = self.sender, self.sender.backend
        batch_id = uuid.uuid4().hex
        recipients, refused = deliverable(backend, [sender.recipient(r) for r in readers])
        envelope = sender.envelope(variant, batch_id)
        payload = backend.build(envelope, recipients) if recipients else None
        return Ready(batch_id, variant.key, envelope, readers, new, recipients, refused, payload)

    def claim(self, batch: Ready) -> bool:
        """Claim ``batch`` (in the claiming thread): is anything of it ours to post?"""
        issue_id, ledger = self.sender.issue.id, self.ledger
        claimed = ledger.claim(
            issue_id,
            [r.key for r in batch.readers],
            run_id=self.run_id,
            batch_id=batch.batch_id,
            variant=batch.variant,
            resend_in_doubt=self.resend_in_doubt,
            new=batch.new,  # written by the claim, as ours
        )
        batch.claimed = ours = frozenset(claimed)
        if refused := {key: why for key, why in batch.refused.items() if key in ours}:
            ledger.record_failed(issue_id, batch.batch_id, refused)
        if len(ours) - len(refused) < len(batch.recipients):  # another sender has some of them
            batch.recipients = [r for r in batch.recipients if r.key in ours]
            batch.payload = self.sender.backend.build(batch.envelope, batch.recipients) if batch.recipients else None
        return batch.payload is not None

    def post(self, batch: Ready) -> None:
        """Hand ``batch`` over (in a posting thread); a refusal or a lost answer is its answer, not an error."""
        try:
            batch.answer = self.sender.backend.post(batch.envelope, batch.payload)
        except (BatchFailed, BatchInDoubt) as err:
            batch.answer = err

    def settle(self, flight: Flight) -> None:
        """Record what became of a batch sent on its way (in the send loop's thread, in the order they left)."""
        batch: Ready = flight.batch
        issue_id, ledger, report, ours = self.sender.issue.id, self.ledger, self.report, batch.claimed
        if not flight.posted:  # nothing to post, or the pipeline stopped before
            if ours and (batch.payload is not None or flight.error is not None):
                ledger.release(batch.batch_id)  # claimed, and never left
            if flight.error is not None:
                raise flight.error
            if flight.claimed:
                self._account(batch)
            return
        self._account(batch)
        batch_id, answer = batch.batch_id, flight.error or batch.answer
        assert answer is not None  # a post that returns has its answer
        mine = batch.readers  # most often: the claim took them all, the backend refused none
        if len(ours) < len(mine) or batch.refused:
            mine = [r for r in mine if r.key in ours and r.key not in batch.refused]
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

    def _account(self, batch: Ready) -> None:
        """A claimed batch's readers that another sender has, and those the backend refused."""
        ours, refused = batch.claimed, batch.refused
        self.report.elsewhere += len(batch.readers) - len(ours)
        if refused:
            found = {r.email: why for r in batch.readers if r.key in ours and (why := refused.get(r.key))}
            self.report.failed.update(found)
        self.progress(len(batch.readers))


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
                batches.claim,
                batches.post,
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
        for selection in sorted(self._open, key=lambda s: rank.get(s, len(rank))):
            self._hand(selection)
        if self._inflight is not None:
            self._inflight.wait()

    def close(self) -> None:
        """Stop: give back the batches claimed that never left, wait for those in the air and record
        their answers (after ``finish``: nothing is left to do)."""
        if self._inflight is not None:
            self._inflight.wait(stop=True)

    def _hand(self, selection: Selection) -> None:
        readers, new = self._open.pop(selection)
        variant = self.sender.variant(selection)
        self.report.variants[variant.key] = self.report.variants.get(variant.key, 0) + len(readers)
        if self.batches is None or self._inflight is None:
            self._check(readers, variant)
            return
        self._inflight.hand_over(self.batches.build(readers, new, variant))

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
    refused = backend.refused(recipients)
    if not refused:
        return recipients, refused
    return [r for r in recipients if r.key not in refused], refused
