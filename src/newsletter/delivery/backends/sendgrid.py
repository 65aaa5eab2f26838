"""The SendGrid backend: v3 Mail Send, one request for up to 1,000 readers.

Readers of one variant share the content; what differs per reader goes in
``substitutions`` of their own personalization: the greeting name twice (a
tag in the HTML part gets the HTML-escaped name, a tag in the text part the
name as written) and the reader's own preferences link (our
``/preferences/`` page, which knows their topics; SendGrid's group page does
not). The unsubscribe link is SendGrid's own ``<%asm_group_unsubscribe_raw_url%>``
tag, which SendGrid fills from the unsubscribe group, adding the RFC 8058
one-click ``List-Unsubscribe`` headers itself (its event webhook and the
suppression sync bring the unsubscribe back to us).

The payload is a plain dict, built and checked against SendGrid's documented
limits without any network (``build``), so ``--dry-run`` can validate every
request; ``post`` only hands it over, retrying what is safe to retry:

- 429: wait for ``X-RateLimit-Reset`` (bounded), then retry;
- 5xx, and connection errors raised while the request was being sent
  (urllib wraps those in ``URLError``): back off exponentially with jitter;
- other 4xx: the batch fails at once with SendGrid's messages;
- a timeout or a dropped connection *after* the whole request was sent: the
  batch may well have been accepted, so it is in doubt and never retried
  blindly (a retry could send every reader of the batch twice).
"""

from __future__ import annotations

import html
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from email.utils import parseaddr
from http.client import HTTPException
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from newsletter.delivery.backends.base import Backend, Envelope, Outcome, Recipient
from newsletter.delivery.backends.message import list_id
from newsletter.errors import BatchFailed, BatchInDoubt, ConfigError, SuppressionsUnavailable

# SendGrid's documented limits for one v3 Mail Send request.
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_REQUEST_BYTES = 30 * 1024 * 1024
# How long a 429 may make us wait before trying again.
MAX_RATE_LIMIT_WAIT = 120.0

NAME_HTML = "-nl_name_html-"
NAME_TEXT = "-nl_name_text-"
PREFERENCES_HTML = "-nl_preferences_html-"
PREFERENCES_TEXT = "-nl_preferences_text-"
UNSUBSCRIBE_TAG = "<%asm_group_unsubscribe_raw_url%>"

# python_http_client logs request headers (the API key) and payloads
# (readers' addresses) at DEBUG: never let that through, whatever the root level.
logging.getLogger("python_http_client").setLevel(logging.WARNING)


class PayloadError(ConfigError):
    """A request would break one of SendGrid's limits: a bug or a bad setting, not a delivery fault."""


def _address(value: str) -> dict[str, str]:
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def _size(value: Any) -> int:
    # The library sends json.dumps(body) as is: ASCII, non-ASCII escaped.
    return len(json.dumps(value))


# A name this long or shorter always fits a personalization's substitutions:
# escaped for HTML and then for JSON a character is at most 12 bytes in each
# of its two values: 24 x 300, the preferences link twice (ASCII, a few
# hundred bytes at most) and the tags stay under 10,000 bytes. (Subscriber
# files shorten names to 100 characters.)
SHORT_NAME = 300


def _fits(mapping: dict[str, str], limit: int) -> bool:
    # A character is at most 12 bytes of JSON (a surrogate pair): when even
    # that bound fits, skip serialising each reader's values.
    bound = 2 + sum(12 * (len(k) + len(v)) + 8 for k, v in mapping.items())
    return bound <= limit or _size(mapping) <= limit


def validate(payload: dict[str, Any], *, people: int | None = None) -> None:
    """Refuse what SendGrid would refuse (see tests/fake_sendgrid.py for the other side).

    ``people``: from a caller that made the personalizations one recipient
    each and checked them as it did (``build``: distinct addresses,
    substitutions that fit), an upper bound of their size. Then they are
    not gone through again, and the request is measured (serialised: the
    client does that once more to send it) only if the bound does not
    clear SendGrid's limit.
    """
    personalizations = payload.get("personalizations") or []
    if not 1 <= len(personalizations) <= MAX_PERSONALIZATIONS:
        raise PayloadError(f"{len(personalizations)} personalizations; SendGrid takes 1 to {MAX_PERSONALIZATIONS}")
    seen: set[str] = set()
    recipients = len(personalizations) if people is not None else 0
    for p in personalizations if people is None else ():
        for field in ("to", "cc", "bcc"):
            for person in p.get(field, []):
                recipients += 1
                key = person["email"].lower()
                if key in seen:
                    raise PayloadError(f"{person['email']} appears twice in one request")
                seen.add(key)
        if not _fits(p.get("substitutions", {}), MAX_SUBSTITUTION_BYTES):
            raise PayloadError(f"substitutions over {MAX_SUBSTITUTION_BYTES} bytes for {p['to'][0]['email']}")
    if recipients > MAX_RECIPIENTS:
        raise PayloadError(f"{recipients} recipients; SendGrid takes at most {MAX_RECIPIENTS} per request")
    categories = payload.get("categories", [])
    if len(categories) > MAX_CATEGORIES or any(len(c) > MAX_CATEGORY_LENGTH for c in categories):
        raise PayloadError(
            f"categories {categories!r} break SendGrid's limit of {MAX_CATEGORIES} x {MAX_CATEGORY_LENGTH} characters"
        )
    if _size(payload.get("custom_args", {})) > MAX_CUSTOM_ARGS_BYTES:
        raise PayloadError(f"custom_args over {MAX_CUSTOM_ARGS_BYTES} bytes")
    types = [c["type"] for c in payload.get("content", [])]
    if types[:1] != ["text/plain"]:
        raise PayloadError(f"content must start with text/plain, not {types}")
    if people is not None and _size({k: v for k, v in payload.items() if k != "personalizations"}) + people <= (
        MAX_REQUEST_BYTES
    ):
        return
    if _size(payload) > MAX_REQUEST_BYTES:
        raise PayloadError(f"request of {_size(payload):,} bytes is over SendGrid's {MAX_REQUEST_BYTES:,}")


def _substitutions(name: str, preferences_url: str) -> dict[str, str]:
    """One reader's values: escaped for the HTML part's tags, as written for the text part's."""
    shown = name.strip() or "reader"
    return {
        NAME_HTML: html.escape(shown, quote=True),
        NAME_TEXT: shown,
        PREFERENCES_HTML: html.escape(preferences_url, quote=True),
        PREFERENCES_TEXT: preferences_url,
    }


class SendGridBackend(Backend):
    name = "sendgrid"
    batch_size = MAX_PERSONALIZATIONS
    # personal_links stays True: the preferences link is our own page, with the reader's token

    def __init__(
        self,
        api_key: str,
        *,
        host: str,
        asm_group_id: int,
        track_opens: bool = False,
        track_clicks: bool = False,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = SendGridAPIClient(api_key, host=host)
        # The library has no timeout by default: a hung connection would hang the send.
        self._client.client.timeout = timeout
        self.host = host
        self.asm_group_id = asm_group_id
        self.track_opens = track_opens
        self.track_clicks = track_clicks
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._sleep = sleep
        self._content: dict[tuple[str, str, str], list[dict[str, str]]] = {}

    def describe(self) -> str:
        return f"SendGrid ({self.host}, unsubscribe group {self.asm_group_id})"

    def suppressions(self) -> dict[str, str]:
        return fetch_suppressions(self)

    # -- payload ------------------------------------------------------------------

    def _content_of(self, envelope: Envelope) -> list[dict[str, str]]:
        key = (envelope.issue_id, envelope.variant.key, envelope.subject)
        if key not in self._content:
            html_part, text_part = envelope.variant.with_tags(
                {"unsubscribe_url": UNSUBSCRIBE_TAG, "preferences_url": PREFERENCES_HTML, "name": NAME_HTML},
                {"unsubscribe_url": UNSUBSCRIBE_TAG, "preferences_url": PREFERENCES_TEXT, "name": NAME_TEXT},
            )
            self._content[key] = [{"type": "text/plain", "value": text_part}, {"type": "text/html", "value": html_part}]
        return self._content[key]

    def refuse(self, recipient: Recipient) -> str | None:
        if not recipient.email.isascii():
            # SendGrid's Mail Send takes ASCII addresses only (no SMTPUTF8); an
            # internationalised domain already reaches us in its xn-- form.
            return "SendGrid cannot deliver to an address with non-ASCII characters before the @ (SMTPUTF8)"
        long = len(recipient.name) > SHORT_NAME  # a short name always fits: its values are not made
        if long and not _fits(_substitutions(recipient.name, recipient.preferences_url), MAX_SUBSTITUTION_BYTES):
            return f"the name is over SendGrid's {MAX_SUBSTITUTION_BYTES} bytes of substitutions"
        return None

    def refused(self, recipients: Sequence[Recipient]) -> dict[str, str]:
        # Asked of a whole batch at once, mostly in C: nearly always nobody is refused.
        addresses = "".join([r.email for r in recipients])
        if addresses.isascii() and max([len(r.name) for r in recipients], default=0) <= SHORT_NAME:
            return {}
        return super().refused(recipients)

    def build(self, envelope: Envelope, recipients: Sequence[Recipient]) -> dict[str, Any]:
        """The JSON body of one request; raises PayloadError if SendGrid would refuse it."""
        personalizations: list[dict[str, Any]] = []
        add = personalizations.append
        # Fields unpacked, not read by name: this loop runs for every reader of a send.
        for email, name, _, _, preferences, _ in recipients:
            substitutions = _substitutions(name, preferences)
            if len(name) > SHORT_NAME and not _fits(substitutions, MAX_SUBSTITUTION_BYTES):
                raise PayloadError(f"substitutions over {MAX_SUBSTITUTION_BYTES} bytes for {email}")
            add({"to": [{"email": email, "name": name} if name else {"email": email}], "substitutions": substitutions})
        keys = [r.email.lower() for r in recipients]
        if len(set(keys)) < len(keys):
            twice = Counter(keys).most_common(1)[0][0]
            raise PayloadError(f"{twice} appears twice in one request")
        chars = sum(len(r.email) + len(r.name) for r in recipients)
        variant = envelope.variant.key
        payload: dict[str, Any] = {
            "personalizations": personalizations,
            "from": _address(envelope.sender),
            "subject": envelope.subject,
            "content": self._content_of(envelope),
            "categories": ["newsletter", f"issue-{envelope.issue_id}", f"variant-{variant}"]
            + (["test"] if envelope.test else []),
            "custom_args": {"issue": envelope.issue_id, "variant": variant, "batch": envelope.batch_id},
            # RFC 2919, as in the outbox's messages; one line (SendGrid folds headers itself).
            "headers": {"List-Id": " ".join(list_id(envelope.sender).split())},
            "asm": {"group_id": self.asm_group_id},
            "tracking_settings": {
                "click_tracking": {"enable": self.track_clicks, "enable_text": False},
                "open_tracking": {"enable": self.track_opens},
                # The unsubscribe group provides the links; SendGrid's own footer would repeat them.
                "subscription_tracking": {"enable": False},
            },
        }
        if envelope.reply_to:
            payload["reply_to"] = _address(envelope.reply_to)
        # Each personalization: its substitutions (which fit), its address and
        # name at most 12 bytes a character in JSON, and the punctuation.
        validate(payload, people=len(recipients) * (MAX_SUBSTITUTION_BYTES + 100) + 12 * chars)
        return payload

    # -- transport ----------------------------------------------------------------

    def post(self, envelope: Envelope, payload: dict[str, Any]) -> Outcome:
        last = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._client.client.mail.send.post(request_body=payload)
            except HTTPError as err:
                status = getattr(err, "status_code", 0)
                if status == 429:
                    last = "rate limited (429)"
                    self._sleep(self._rate_limit_wait(err, attempt))
                    continue
                if status >= 500:
                    last = f"SendGrid error {status}"
                    self._sleep(self._backoff(attempt))
                    continue
                raise BatchFailed(f"SendGrid refused the batch ({status}): {_messages(err)}") from None
            except URLError as err:
                # Raised while connecting or sending: SendGrid never got the whole request.
                last = f"cannot reach SendGrid: {getattr(err, 'reason', err)}"
                self._sleep(self._backoff(attempt))
                continue
            except (TimeoutError, OSError, HTTPException) as err:
                raise BatchInDoubt(
                    f"no answer from SendGrid after the request was sent ({type(err).__name__}); "
                    "it may have been accepted"
                ) from None
            headers = {k.lower(): v for k, v in dict(response.headers).items()}
            return Outcome(message_id=headers.get("x-message-id"))
        raise BatchFailed(f"gave up after {self.max_attempts} attempts: {last}")

    def _backoff(self, attempt: int) -> float:
        # Exponential with full jitter: many senders retrying at once spread out.
        return random.uniform(0, self.backoff * 2 ** (attempt - 1))

    def _rate_limit_wait(self, err: HTTPError, attempt: int) -> float:
        headers = {k.lower(): v for k, v in dict(getattr(err, "headers", None) or {}).items()}
        reset = headers.get("x-ratelimit-reset")
        if reset is not None:
            try:
                return min(max(float(reset) - time.time(), 0.0) + random.uniform(0, 0.25), MAX_RATE_LIMIT_WAIT)
            except ValueError:
                pass
        # /mail/send may answer 429 without any rate-limit header.
        return min(self._backoff(attempt) + self.backoff, MAX_RATE_LIMIT_WAIT)


def _messages(err: HTTPError) -> str:
    """SendGrid's error messages from an error body, for people to read."""
    body = getattr(err, "body", b"") or b""
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        found = [
            f"{e.get('message', '')}" + (f" (field {e['field']})" if e.get("field") else "")
            for e in data.get("errors", [])
        ]
        if found:
            return "; ".join(found)
    except (ValueError, AttributeError):
        pass
    return (body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body))[:300] or "no details"


# SendGrid's suppression lists, and how a reader on each is reported.
SUPPRESSION_LISTS = {
    "unsubscribes": "unsubscribed from all mail (SendGrid)",
    "bounces": "bounced (SendGrid)",
    "blocks": "blocked (SendGrid)",
    "invalid_emails": "invalid address (SendGrid)",
    "spam_reports": "reported spam (SendGrid)",
}
PAGE = 500


def _json_list(body: bytes | str | None, what: str) -> list[Any]:
    try:
        rows = json.loads(body or b"[]")
    except ValueError:
        rows = None
    if not isinstance(rows, list) or any(isinstance(r, dict) and "email" not in r for r in rows):
        raise ConfigError(f"SendGrid's answer for {what} is not a list of addresses; suppressions not synced")
    return rows


def fetch_suppressions(backend: SendGridBackend) -> dict[str, str]:
    """Every suppressed address (lower case) → why, from all five lists and the group."""
    client = backend._client.client
    found: dict[str, str] = {}
    try:
        for name, reason in SUPPRESSION_LISTS.items():
            offset = 0
            while True:
                response = client.suppression._(name).get(query_params={"limit": PAGE, "offset": offset})
                rows = _json_list(response.body, f"suppression/{name}")
                for row in rows:
                    found.setdefault(str(row["email"] if isinstance(row, dict) else row).lower(), reason)
                if len(rows) < PAGE:
                    break
                offset += PAGE
        if backend.asm_group_id is not None:
            response = client.asm.groups._(str(backend.asm_group_id)).suppressions.get()
            for email in _json_list(response.body, "the unsubscribe group's suppressions"):
                found.setdefault(str(email).lower(), "unsubscribed from this newsletter (SendGrid)")
    except HTTPError as err:
        if getattr(err, "status_code", 0) in (401, 403):
            # A key restricted to Mail Send (a recommended setup) may not read
            # the lists; SendGrid still drops suppressed addresses at delivery.
            raise SuppressionsUnavailable(
                'the SendGrid API key may not read suppressions (give it "Suppressions: read" access); '
                "SendGrid still drops suppressed addresses at delivery"
            ) from None
        raise ConfigError(
            f"cannot fetch suppressions from SendGrid ({getattr(err, 'status_code', '?')}): {_messages(err)}"
        ) from None
    except (URLError, TimeoutError, OSError, HTTPException) as err:
        raise ConfigError(
            f"cannot reach SendGrid to fetch suppressions: {getattr(err, 'reason', type(err).__name__)}"
        ) from None
    return found
