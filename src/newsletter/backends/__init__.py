"""Delivery backends: one module per provider behind ``base.Backend``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.backends.base import Backend, Envelope, Outcome, Recipient

if TYPE_CHECKING:
    from newsletter.settings import Settings

__all__ = ["Backend", "Envelope", "Outcome", "Recipient", "select_backend"]


def select_backend(settings: "Settings") -> Backend:
    """The outbox unless a provider is configured."""
    from newsletter.backends.outbox import OutboxBackend

    return OutboxBackend(settings.outbox_dir)
