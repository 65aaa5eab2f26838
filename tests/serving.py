"""The readers' server for tests: the real app on uvicorn on a free 127.0.0.1 port, in a thread of the test process."""

from __future__ import annotations

import base64
import email
import email.policy
import html
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.settings import load_settings
from newsletter.web.readers import Serving, bind
from newsletter.web.readers.app import ReadersApp

from conftest import Newsletter


@dataclass
class Server:
    url: str
    nl: Newsletter
    app: ReadersApp
    client: httpx.Client

    def form(self, path: str) -> str:
        """The signed form token of the page at ``path``."""
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        return form_token(response.text)


@contextmanager
def serving(nl: Newsletter, monkeypatch: pytest.MonkeyPatch, path: str = "", **env: str) -> Iterator[Server]:
    """The server for ``nl``; NEWSLETTER_BASE_URL is its own address (and ``path``), so every link resolves on it."""
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}{path}"
    monkeypatch.setenv("NEWSLETTER_BASE_URL", url)  # for the commands the test runs too (send, audience)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with Serving(load_settings(nl.root), sock) as app, httpx.Client(base_url=url + "/", timeout=30) as client:
        yield Server(url, nl, app, client)


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found, page
    return html.unescape(found.group(1))


def mails(root: Path, kind: str) -> list[email.message.EmailMessage]:
    """The messages in ``outbox/KIND/`` (confirm, link, or an issue), oldest first."""
    folder = root / "outbox" / kind
    paths = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]  # type: ignore[misc]


def wait_for_mails(root: Path, kind: str, count: int, timeout: float = 10.0) -> list[email.message.EmailMessage]:
    """Emails go out after the page is answered (a background task): wait for them."""
    deadline = time.monotonic() + timeout
    while len(found := mails(root, kind)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def text_of(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(msg: email.message.EmailMessage, path: str) -> str:
    found = re.search(rf"(https?://\S+/{path}/\?t=\S+)", text_of(msg))
    assert found, text_of(msg)
    return found.group(1)


def to_of(msg: email.message.EmailMessage) -> str:
    return str(msg["To"].addresses[0].addr_spec).lower()


class WebhookKeys:
    """A real ECDSA P-256 key pair: events signed as SendGrid signs them (timestamp + raw body, SHA-256)."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = base64.b64encode(der).decode("ascii")  # as SendGrid's settings page shows it

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        signature = self.private.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode("ascii"),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def events(*items: dict[str, object]) -> bytes:
    return json.dumps(list(items)).encode("utf-8")
