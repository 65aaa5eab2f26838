"""SendGrid's Event Webhook: signed events that change readers (bounces, spam reports, unsubscribes).

Every request must carry SendGrid's ECDSA signature of its timestamp and raw
body, checked with the public key in ``SENDGRID_WEBHOOK_PUBLIC_KEY`` by the
``sendgrid`` library's verifier; a missing or bad one gets 403, and so does
every request while no key is set.

    bounce (not a temporary "blocked"), dropped   → bounced
    spamreport, unsubscribe, group_unsubscribe     → unsubscribed
    group_resubscribe                              → active

Replays are harmless twice over: an event id (``sg_event_id``) already
applied is skipped, and an event older than the reader's own last choice is
not applied (``ReaderStore.choose``). Unknown addresses are left alone;
the answer is 200 either way, so SendGrid does not retry.
"""

from __future__ import annotations

import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from newsletter.audience.store import ReaderStore
from newsletter.audience.subscribers import Status
from newsletter.errors import ConfigError
from newsletter.settings import Settings
from newsletter.web.readers.state import ReaderState

log = logging.getLogger("newsletter.serve")
STATUS_OF: dict[str, Status] = {
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "unsubscribed",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "group_resubscribe": "active",
}


def load_key(public_key: str) -> Any:
    """The verification key; ConfigError naming the setting if it is not one."""
    try:
        return EventWebhook().convert_public_key_to_ecdsa(public_key.strip())
    except (ValueError, TypeError) as err:
        raise ConfigError(f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 ECDSA public key: {err}") from None


def verified(key: Any, body: bytes, signature: str, timestamp: str) -> bool:
    if key is None or not signature or not timestamp:
        return False
    try:
        return bool(EventWebhook().verify_signature(body.decode("utf-8"), signature, timestamp, key))
    except (ValueError, binascii.Error, UnicodeDecodeError, TypeError):
        return False


class SendGridEvents:
    def __init__(self, settings: Settings, store: ReaderStore, state: ReaderState) -> None:
        value = settings.sendgrid_webhook_public_key.get_secret_value()
        self.key = load_key(value) if value else None
        self.group = settings.sendgrid_asm_group_id
        self.store = store
        self.state = state

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        if not verified(self.key, body, signature, timestamp):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            events = json.loads(body)
        except ValueError:
            return PlainTextResponse("not JSON", status_code=400)
        if not isinstance(events, list):
            return PlainTextResponse("not a list of events", status_code=400)
        applied = await run_in_threadpool(self.apply, events)
        return PlainTextResponse(f"{applied} applied")

    def apply(self, events: list[Any]) -> int:
        applied, seen = 0, []
        for event in events:
            if not isinstance(event, dict):
                continue
            status = STATUS_OF.get(str(event.get("event")))
            email, event_id = event.get("email"), str(event.get("sg_event_id") or "")[:255]
            if status is None or not isinstance(email, str) or not event_id or self.state.seen(event_id):
                continue
            if event.get("event") == "bounce" and event.get("type") == "blocked":
                continue  # a temporary refusal, not a dead address
            group = event.get("asm_group_id")
            if event.get("event", "").startswith("group_") and self.group and group not in (None, self.group):
                continue  # another list's group
            try:
                at = datetime.fromtimestamp(float(event.get("timestamp", 0)), UTC)
            except (TypeError, ValueError, OverflowError):
                continue
            if self.store.choose(email[:320], status=status, at=at, known_only=True) is not None:
                applied += 1
            seen.append(event_id)
        if seen:
            self.state.mark_seen(seen)
        return applied
