"""The backend interface: build a batch's payload, then hand it over.

As in django-anymail, building the payload is apart from the transport, so a
dry run builds and validates everything and posts nothing. A batch is every
recipient of one variant, up to ``batch_size``: a provider that takes many
recipients per request (SendGrid) sends a batch in one request; the outbox
writes one file per recipient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from newsletter.render.variant import Variant


class Recipient(NamedTuple):
    """One reader of a batch, with their personal links already built.

    A named tuple: one is made for every reader of a send, and a tuple is
    made in a third of the time of a frozen dataclass.
    """

    email: str
    name: str
    token: str
    unsubscribe_url: str
    preferences_url: str
    unsubscribe_mailto: str | None = None

    @property
    def key(self) -> str:
        return self.email.lower()


@dataclass(frozen=True)
class Envelope:
    """What every message of a batch shares."""

    issue_id: str
    variant: Variant
    subject: str
    sender: str
    reply_to: str | None = None
    batch_id: str = ""
    test: bool = False


@dataclass
class Outcome:
    """The provider's answer for a batch: every address not in ``failed`` was accepted."""

    message_id: str | None = None
    failed: dict[str, str] = field(default_factory=dict)


class Backend(ABC):
    """A way to deliver messages. Subclasses fill in ``build`` and ``post``."""

    name: ClassVar[str]
    batch_size: ClassVar[int] = 500
    # Whether messages carry our per-reader links and token (Recipient's);
    # a provider that fills in links of its own needs none made for it.
    personal_links: ClassVar[bool] = True

    @abstractmethod
    def build(self, envelope: Envelope, recipients: Sequence[Recipient]) -> Any:
        """Everything to hand over for this batch, built without any I/O."""

    @abstractmethod
    def post(self, envelope: Envelope, payload: Any) -> Outcome:
        """Hand the payload over. Raise BatchFailed or BatchInDoubt when it did not go."""

    def refuse(self, recipient: Recipient) -> str | None:
        """Why this backend cannot deliver to ``recipient`` at all (None: it can).

        Such a reader fails alone, with the reason, before the batch is built:
        one reader's data must never stop the others.
        """
        return None

    def refused(self, recipients: Sequence[Recipient]) -> dict[str, str]:
        """Why this backend cannot deliver to each of ``recipients`` it refuses (by key; ``refuse``)."""
        if type(self).refuse is Backend.refuse:  # refuses nobody: not asked once a reader
            return {}
        return {r.key: why for r in recipients if (why := self.refuse(r)) is not None}

    def send(self, envelope: Envelope, recipients: Sequence[Recipient]) -> Outcome:
        return self.post(envelope, self.build(envelope, recipients))

    def delivered(self, issue_id: str, recipients: Sequence[Recipient]) -> set[str] | None:
        """Of in-doubt recipients, the addresses that did arrive; None if this backend cannot tell."""
        return None

    def suppressions(self) -> dict[str, str] | None:
        """Addresses the provider will not deliver to (lower case) → why; None if it keeps no such lists."""
        return None

    def describe(self) -> str:
        return self.name
