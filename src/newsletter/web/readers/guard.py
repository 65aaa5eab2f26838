"""What keeps the readers' pages safe on the open internet: headers, origin checks, rate limits, a quiet log.

- Every response: ``Referrer-Policy: no-referrer`` (links carry tokens),
  ``X-Content-Type-Options: nosniff``, and a ``Content-Security-Policy``
  that loads nothing from anywhere, frames nowhere (``frame-ancestors
  'none'``) and posts forms only here. An HTML page's own inline ``<style>``
  and ``<script>`` blocks are allowed by their SHA-256 (``csp_for``): no
  ``unsafe-inline``.
- Form posts must come from our own pages: a browser's ``Origin`` (or
  ``Sec-Fetch-Site``) naming another site is refused, besides the signed form
  token (``tokens``).
- A per-client-address limit on form posts (``RateLimiter``); the client
  address is the connection's, or the ``X-Forwarded-For`` of a trusted proxy
  (uvicorn's proxy-headers middleware, configured from
  ``NEWSLETTER_TRUSTED_PROXIES``).
- Request bodies are capped (64 KiB for forms, 8 MiB for the provider's
  events): a form is a few hundred bytes, and a body is read into memory.
- The log has a line per request without the query string: tokens are in it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from collections import deque
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("newsletter.serve")

MAX_FORM_BODY = 64 * 1024
MAX_EVENTS_BODY = 8 * 1024 * 1024
BASE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; img-src 'self' data:"
_INLINE = re.compile(r"<(style|script)(?:\s[^>]*)?>(.*?)</\1>", re.S | re.I)


def csp_for(page: str) -> str:
    """The policy for an HTML page: nothing but its own inline style and script blocks, by hash."""
    hashes: dict[str, list[str]] = {"style": [], "script": []}
    for match in _INLINE.finditer(page):
        if "src=" in match.group(0).split(">", 1)[0]:
            continue  # an external script: not allowed, so not listed
        digest = base64.b64encode(hashlib.sha256(match.group(2).encode("utf-8")).digest()).decode("ascii")
        hashes[match.group(1).lower()].append(f"'sha256-{digest}'")
    policy = BASE_POLICY
    for kind, found in hashes.items():
        if found:
            policy += f"; {kind}-src {' '.join(dict.fromkeys(found))}"
    return policy


class BodyTooLarge(Exception):
    pass


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every response (a route's own CSP is kept); bodies capped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]
        limit = MAX_EVENTS_BODY if scope["path"].endswith("/webhooks/sendgrid") else MAX_FORM_BODY
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", BASE_POLICY)
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length", b"0")
        try:
            if not declared.isdigit() or int(declared) > limit:
                raise BodyTooLarge
            await self.app(scope, capped_receive, send_with_headers)
        except BodyTooLarge:
            if status[0]:
                raise  # the answer has begun: nothing left to do but drop the connection
            await PlainTextResponse("request body too large", status_code=413)(scope, receive, send_with_headers)
        finally:
            # The path only: the query string carries readers' tokens.
            log.info(
                "%s %s %s %.0f ms", scope["method"], scope["path"], status[0], (time.perf_counter() - started) * 1000
            )


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def from_elsewhere(request: Request, origin: str) -> bool:
    """True if a browser says this post comes from another site's page."""
    sent = request.headers.get("origin")
    if sent is not None and sent != "null" and sent.rstrip("/") != origin:
        return True
    return request.headers.get("sec-fetch-site", "same-origin") == "cross-site"


def client_of(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (a sliding window), in this process."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._swept = time.monotonic()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._swept > self.window:  # forget clients gone quiet: memory stays bounded
                self._seen = {k: q for k, q in self._seen.items() if q and q[-1] > now - self.window}
                self._swept = now
            times = self._seen.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True
