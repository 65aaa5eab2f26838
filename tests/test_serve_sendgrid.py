"""`newsletter serve` with SendGrid: its signed Event Webhook, and every link of its emails resolving on our host."""

from __future__ import annotations

import os
import re
import time

import httpx
import pytest

from test_serve import confirm, subscribe

from conftest import Newsletter
from fake_sendgrid import FakeSendGrid
from serving import WebhookKeys, events, serving


def test_sendgrid_events_are_verified_and_replays_are_harmless(
    samples: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = WebhookKeys()
    day_ago = time.time() - 86400  # the author last edited the file yesterday: today's events are newer
    os.utime(samples.root / "subscribers" / "sample.csv", (day_ago, day_ago))
    now = int(time.time())
    with serving(samples, monkeypatch, SENDGRID_WEBHOOK_PUBLIC_KEY=keys.public) as server:
        store = server.app.store
        body = events(
            {
                "email": "ana.silva@example.org",
                "event": "bounce",
                "type": "bounce",
                "sg_event_id": "e1",
                "timestamp": now - 60,
            },
            {"email": "ben.okafor@example.org", "event": "spamreport", "sg_event_id": "e2", "timestamp": now - 60},
            {"email": "stranger@example.org", "event": "unsubscribe", "sg_event_id": "e3", "timestamp": now - 60},
            {
                "email": "chloe.martin@example.org",
                "event": "bounce",
                "type": "blocked",
                "sg_event_id": "e4",
                "timestamp": now - 60,
            },
        )
        hook = f"{server.url}/webhooks/sendgrid"
        assert httpx.post(hook, content=body, headers={"Content-Type": "application/json"}).status_code == 403
        forged = keys.headers(body)
        forged["X-Twilio-Email-Event-Webhook-Signature"] = WebhookKeys().headers(body)[
            "X-Twilio-Email-Event-Webhook-Signature"
        ]
        assert httpx.post(hook, content=body, headers=forged).status_code == 403
        tampered = body.replace(b"bounce", b"deferred", 1)
        assert httpx.post(hook, content=tampered, headers=keys.headers(body)).status_code == 403
        assert all(store.get(a).status == "active" for a in ("ana.silva@example.org", "ben.okafor@example.org"))  # type: ignore[union-attr]
        ok = httpx.post(hook, content=body, headers=keys.headers(body))
        assert ok.status_code == 200 and ok.text == "2 applied"
        assert store.get("ana.silva@example.org").status == "bounced"  # type: ignore[union-attr]
        assert store.get("ben.okafor@example.org").status == "unsubscribed"  # type: ignore[union-attr]
        assert store.get("chloe.martin@example.org").status == "active"  # type: ignore[union-attr]  # blocked is temporary
        assert store.get("stranger@example.org") is None
        # The reader signs up again after the bounce; the same events replayed change nothing.
        store.choose("ana.silva@example.org", status="active")
        assert httpx.post(hook, content=body, headers=keys.headers(body)).text == "0 applied"
        assert store.get("ana.silva@example.org").status == "active"  # type: ignore[union-attr]
        # An old event under a new id is older than the reader's choice: not applied either.
        late = events(
            {"email": "ana.silva@example.org", "event": "bounce", "sg_event_id": "e9", "timestamp": now - 864000}
        )
        assert httpx.post(hook, content=late, headers=keys.headers(late)).text == "0 applied"
        resub = events(
            {
                "email": "ben.okafor@example.org",
                "event": "group_resubscribe",
                "sg_event_id": "e5",
                "timestamp": 4_000_000_000,
            }
        )
        assert httpx.post(hook, content=resub, headers=keys.headers(resub)).text == "1 applied"
        assert store.get("ben.okafor@example.org").status == "active"  # type: ignore[union-attr]


def test_with_sendgrid_every_link_resolves_and_a_returning_reader_is_unsuppressed(
    samples: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSendGrid().start()
    fake.group_suppressions[4242] = ["ivan.petrov@example.org"]
    try:
        sendgrid = fake.settings()
        with serving(samples, monkeypatch, **sendgrid) as server:
            # The issue: preferences on our page (it knows the topics), unsubscribe through SendGrid's group.
            assert samples.cli("send", "2021-07", "--yes").exit_code == 0
            sent = fake.by_reader()["dev.patel@example.org"][0]
            preferences = re.search(r"(http://127\.0\.0\.1:\d+/preferences/\?t=[\w-]+)", sent.text)
            assert preferences is not None and preferences.group(1) in sent.html
            page = server.client.get(preferences.group(1))
            assert page.status_code == 200 and "dev.patel@example.org" in page.text
            assert "https://sendgrid.test/unsubscribe/4242/" in sent.text
            # A reader who left through the group signs up again: the confirmation reaches them (no group
            # on it), and confirming lifts the group's suppression, here and at SendGrid.
            subscribe(server, "ivan.petrov@example.org", "Ivan", (), all="1")
            deadline = time.monotonic() + 10
            while "ivan.petrov@example.org" not in fake.by_reader() and time.monotonic() < deadline:
                time.sleep(0.05)
            [confirmation] = fake.by_reader()["ivan.petrov@example.org"]
            assert confirmation.asm_group_id is None and "List-Unsubscribe" not in confirmation.headers
            link = re.search(r"(http://\S+/confirm/\?t=\S+)", confirmation.text)
            assert link is not None and link.group(1) in confirmation.html.replace("&amp;", "&")
            assert "You are subscribed" in confirm(server, link.group(1)).text
            assert fake.group_suppressions[4242] == []
            ivan = server.app.store.get("ivan.petrov@example.org")
            assert ivan is not None and ivan.status == "active"  # the file says unsubscribed; the reader is back
    finally:
        fake.stop()
