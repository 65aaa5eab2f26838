"""Signed tokens of the readers' pages, with itsdangerous: confirmation links and form tokens.

- A **confirmation link** carries a signed, timestamped random nonce (the
  ``signups`` row): nothing about the reader, and it expires after 48 hours.
- A **form token** is this server's CSRF defence without cookies: every form
  carries a signed, timestamped token naming the form and what it acts on
  (the reader's link token for their own pages); a post without a valid one
  is refused. A page left open for a day needs a reload.
- A reader's **link token** (an HMAC of the address, in every email sent
  since the first issue) never expires: it is found by its hash, then
  compared with the expected token in constant time.

itsdangerous compares signatures in constant time; so does ``same``.
"""

from __future__ import annotations

import hmac

from itsdangerous import BadData, URLSafeTimedSerializer

from newsletter.web.readers.state import CONFIRM_WITHIN

FORM_VALID_FOR = 24 * 3600


def same(a: str, b: str) -> bool:
    """Constant-time string comparison (for tokens)."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class Signer:
    def __init__(self, secret: str) -> None:
        self._confirm = URLSafeTimedSerializer(secret, salt="newsletter.readers.confirm")
        self._form = URLSafeTimedSerializer(secret, salt="newsletter.readers.form")

    def confirm_token(self, nonce: str) -> str:
        return self._confirm.dumps(nonce)

    def confirm_nonce(self, token: str) -> str | None:
        """The nonce of a confirmation link still within its 48 hours, or None."""
        try:
            value = self._confirm.loads(token, max_age=int(CONFIRM_WITHIN.total_seconds()))
        except BadData:
            return None
        return value if isinstance(value, str) else None

    def form_token(self, form: str, bound: str = "") -> str:
        return self._form.dumps([form, bound])

    def form_ok(self, token: str, form: str, bound: str = "") -> bool:
        try:
            value = self._form.loads(token, max_age=FORM_VALID_FOR)
        except BadData:
            return False
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, str) for v in value)
            and same(value[0], form)
            and same(value[1], bound)
        )
