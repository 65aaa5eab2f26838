"""Delivery backends: one module per provider behind ``base.Backend``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.delivery.backends.base import Backend, Envelope, Outcome, Recipient

if TYPE_CHECKING:
    from newsletter.settings import Settings

__all__ = ["Backend", "Envelope", "Outcome", "Recipient", "select_backend"]


def select_backend(settings: Settings) -> Backend:
    """SendGrid when ``SENDGRID_API_KEY`` is set, else the outbox."""
    from newsletter.delivery.backends.outbox import OutboxBackend
    from newsletter.delivery.backends.sendgrid import SendGridBackend

    key = settings.sendgrid_api_key.get_secret_value()
    if not key:
        return OutboxBackend(settings.outbox_dir)
    return SendGridBackend(
        key,
        host=settings.sendgrid_api_host,
        asm_group_id=settings.sendgrid_asm_group_id or 0,
        track_opens=settings.track_opens,
        track_clicks=settings.track_clicks,
        timeout=settings.sendgrid_timeout,
        max_attempts=settings.sendgrid_max_attempts,
        backoff=settings.sendgrid_backoff,
    )
