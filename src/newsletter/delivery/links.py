"""Per-reader links, built in one place for every backend.

A reader is named in a URL only by an opaque token, an HMAC of their address
under ``NEWSLETTER_SECRET``: it identifies them to our own preference centre
without telling anyone else who they are or what they read.
"""

from __future__ import annotations

import base64
import hmac

from newsletter.settings import Settings


class Links:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.base_url
        self._key = settings.secret.get_secret_value().encode("utf-8")
        self._mailto = settings.unsubscribe_mailto

    def token(self, email: str) -> str:
        digest = hmac.digest(self._key, email.lower().encode("utf-8"), "sha256")  # the one-shot C path
        return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")

    def unsubscribe(self, token: str) -> str:
        return f"{self.base_url}/unsubscribe/?t={token}"

    def preferences(self, token: str) -> str:
        return f"{self.base_url}/preferences/?t={token}"

    def unsubscribe_mailto(self, token: str) -> str | None:
        if not self._mailto:
            return None
        # A token is URL-safe base64: nothing in it needs quoting.
        return f"mailto:{self._mailto}?subject=unsubscribe%20{token}"
