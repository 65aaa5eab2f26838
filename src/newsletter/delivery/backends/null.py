"""A backend that delivers nothing: for measuring our own overhead, and dry runs."""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.delivery.backends.base import Backend, Envelope, Outcome, Recipient


class NullBackend(Backend):
    """Fills every reader's message, as a real backend would, then drops it."""

    name = "null"
    batch_size = 1000

    def build(self, envelope: Envelope, recipients: Sequence[Recipient]) -> list[tuple[str, int]]:
        fill = envelope.variant.fill
        return [(r.key, len(fill(r.name, r.unsubscribe_url, r.preferences_url)[0])) for r in recipients]

    def post(self, envelope: Envelope, payload: list[tuple[str, int]]) -> Outcome:
        return Outcome()
