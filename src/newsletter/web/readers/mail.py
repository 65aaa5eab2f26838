"""The readers' emails handed to the configured backend (outbox or SendGrid), one message at a time.

Each message is a batch of one through the same backends as an issue: the
outbox writes ``outbox/confirm/<random>.eml`` or ``outbox/link/…``; SendGrid
gets one Mail Send request. These are not newsletters, so SendGrid gets no
unsubscribe group with them (a reader who left through the group and signs
up again must still receive the confirmation), and a confirmed reader is
taken off the group's suppressions again, or the next send would skip them.

A fresh backend per message: SendGrid's backend caches content per variant,
and every message here has content of its own (its link).
"""

from __future__ import annotations

import logging
import uuid

from newsletter.delivery.backends import select_backend
from newsletter.delivery.backends.base import Envelope, Recipient
from newsletter.delivery.ledger import Ledger
from newsletter.errors import NewsletterError
from newsletter.render.notice import Kind, NoticeRenderer
from newsletter.settings import Settings

log = logging.getLogger("newsletter.serve")


class Mailer:
    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.renderer = NoticeRenderer(settings)

    def send(self, kind: Kind, email: str, name: str, action_url: str, topics: list[str]) -> bool:
        """Send one email of ``kind``; False (logged, without the address) if it did not go."""
        backend = select_backend(self.settings)
        variant = self.renderer.message(kind, action_url, topics)
        envelope = Envelope(
            kind, variant, variant.subject, self.settings.from_address, self.settings.reply_to or None, uuid.uuid4().hex
        )
        # The token names the outbox file and the Message-ID: random, never the address.
        recipient = Recipient(email, name, uuid.uuid4().hex, "", "")
        refused = backend.refuse(recipient)
        if refused is not None:
            log.warning("a %s email was not sent: %s", kind, refused)
            return False
        try:
            payload = backend.build(envelope, [recipient])
            if isinstance(payload, dict):
                payload.pop("asm", None)  # SendGrid: not a newsletter, no unsubscribe group
            outcome = backend.post(envelope, payload)
        except NewsletterError as err:
            # The provider's message may quote the address: only its first words are logged.
            log.error("a %s email was not sent: %s", kind, str(err).split(":")[0])
            return False
        if outcome.failed:
            log.error("a %s email was not sent: %s", kind, next(iter(outcome.failed.values())).split(":")[0])
            return False
        return True

    def unsuppress(self, email: str) -> None:
        """A reader signed up again: off the provider's group suppressions, here and at SendGrid."""
        with self.ledger.engine.begin() as conn:
            from newsletter.db.schema import suppressions

            conn.execute(suppressions.delete().where(suppressions.c.email == email.lower()))
        backend = select_backend(self.settings)
        group = self.settings.sendgrid_asm_group_id
        if backend.name != "sendgrid" or not group:
            return
        from urllib.error import URLError

        from python_http_client.exceptions import HTTPError

        client = backend._client.client  # type: ignore[attr-defined]
        try:
            client.asm.groups._(str(group)).suppressions._(email).delete()
        except HTTPError as err:
            if getattr(err, "status_code", 0) != 404:  # 404: was not suppressed
                log.error("cannot lift a group suppression at SendGrid (%s)", getattr(err, "status_code", "?"))
        except (URLError, OSError) as err:
            log.error("cannot reach SendGrid to lift a group suppression: %s", type(err).__name__)
