"""Per-reader links, built in one place for every backend.

A reader is named in a URL only by an opaque token, an HMAC of their address
under ``NEWSLETTER_SECRET``: it identifies them to our own preference centre
without telling anyone else who they are or what they read.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac

from newsletter.settings import Settings

_URL_SAFE = bytes.maketrans(b"+/", b"-_")


class Links:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.base_url
        # The key's HMAC state, made once and copied for each token: a third
        # cheaper than hmac.digest, which sets the key up every time (a send
        # makes a token for every reader).
        self._hmac = hmac.new(settings.secret.get_secret_value().encode("utf-8"), digestmod=hashlib.sha256)
        self._mailto = settings.unsubscribe_mailto

    def token(self, email: str) -> str:
        mac = self._hmac.copy()
        mac.update(email.lower().encode("utf-8"))
        # URL-safe base64 of the first 16 bytes, without its padding: 22 characters.
        return binascii.b2a_base64(mac.digest()[:16], newline=False)[:22].translate(_URL_SAFE).decode("ascii")

    def unsubscribe(self, token: str) -> str:
        return f"{self.base_url}/unsubscribe/?t={token}"

    def preferences(self, token: str) -> str:
        return f"{self.base_url}/preferences/?t={token}"

    def unsubscribe_mailto(self, token: str) -> str | None:
        if not self._mailto:
            return None
        # A token is URL-safe base64: nothing in it needs quoting.
        return f"mailto:{self._mailto}?subject=unsubscribe%20{token}"
