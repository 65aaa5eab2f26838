"""What the readers' pages keep besides the readers: pending sign-ups, mail times, provider events seen.

A sign-up is only a ``signups`` row until its confirmation link is opened and
its button pressed (at most 48 hours later); the link carries a signed random
nonce, never the address or the topics. ``reader_mail`` holds one time per
address, so at most one confirmation or link email goes to an address every
10 minutes however often its form is sent, from however many places and
server processes. ``webhook_events`` holds the provider's event ids already
applied: a replayed event changes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from newsletter.audience.choices import Topics, topics_of, topics_text
from newsletter.audience.store import WRITES
from newsletter.db.schema import reader_mail, signups, webhook_events

CONFIRM_WITHIN = timedelta(hours=48)
MAIL_EVERY = timedelta(minutes=10)
EVENTS_KEPT = timedelta(days=90)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class Signup:
    email: str
    name: str
    topics: Topics


class ReaderState:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_signup(self, email: str, name: str, topics: Topics) -> str:
        """Keep a sign-up until it is confirmed or expires; its nonce (for the signed link)."""
        nonce = secrets.token_urlsafe(24)
        now = _now()
        with WRITES, self.engine.begin() as conn:
            conn.execute(delete(signups).where(signups.c.created_at < now - CONFIRM_WITHIN))
            conn.execute(
                insert(signups).values(nonce=nonce, email=email, name=name, topics=topics_text(topics), created_at=now)
            )
        return nonce

    def take_signup(self, nonce: str) -> Signup | None:
        """The sign-up of this nonce, removed (a link confirms once); None if unknown or expired."""
        with WRITES, self.engine.begin() as conn:
            row = conn.execute(select(signups).where(signups.c.nonce == nonce)).first()
            if row is None:
                return None
            conn.execute(delete(signups).where(signups.c.nonce == nonce))
        if _aware(row.created_at) < _now() - CONFIRM_WITHIN:
            return None
        return Signup(row.email, row.name, topics_of(row.topics))

    def may_mail(self, key: str) -> bool:
        """True, and the time noted, if ``key`` was not mailed in the last 10 minutes; else False."""
        now = _now()
        with WRITES, self.engine.begin() as conn:
            last = conn.execute(select(reader_mail.c.sent_at).where(reader_mail.c.key == key)).scalar()
            if last is not None and _aware(last) > now - MAIL_EVERY:
                return False
            if last is None:
                conn.execute(insert(reader_mail).values(key=key, sent_at=now))
            else:
                conn.execute(update(reader_mail).where(reader_mail.c.key == key).values(sent_at=now))
            # Old times say nothing any more: keep the table as small as the last 10 minutes.
            conn.execute(delete(reader_mail).where(reader_mail.c.sent_at < now - MAIL_EVERY))
        return True

    def seen(self, event_id: str) -> bool:
        with WRITES, self.engine.connect() as conn:
            return (
                conn.execute(select(webhook_events.c.event_id).where(webhook_events.c.event_id == event_id)).first()
                is not None
            )

    def mark_seen(self, event_ids: list[str]) -> None:
        now = _now()
        with WRITES, self.engine.begin() as conn:
            conn.execute(delete(webhook_events).where(webhook_events.c.received_at < now - EVENTS_KEPT))
            known = set(
                conn.execute(
                    select(webhook_events.c.event_id).where(webhook_events.c.event_id.in_(event_ids))
                ).scalars()
            )
            new = [{"event_id": e, "received_at": now} for e in dict.fromkeys(event_ids) if e not in known]
            if new:
                conn.execute(insert(webhook_events), new)
