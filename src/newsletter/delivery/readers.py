"""The readers' table with the link tokens the emails carry: what every command and the server read readers through."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from newsletter.audience.store import ReaderStore
from newsletter.delivery.links import Links
from newsletter.settings import Settings, with_sample_defaults


def reader_links(settings: Settings) -> Links:
    """The links a send would put in emails: with the sample secret where the outbox would use it."""
    if not settings.secret.get_secret_value():
        settings, _ = with_sample_defaults(settings)
    return Links(settings)


def reader_store(settings: Settings, engine: Engine) -> ReaderStore:
    """The readers of ``engine``'s database, found by the same tokens the emails' links carry."""
    return ReaderStore(engine, reader_links(settings).token)
