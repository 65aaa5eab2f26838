"""A reader's whole story in real headless Chromium against the real server on 127.0.0.1.

sign up → the confirmation .eml in the outbox → its link → confirm → the next `send` includes them with
their variant → topics changed → `audience` shows it → one-click unsubscribe (httpx, as a mail client
does it) → the next send skips them. Also: the README's pictures of the readers' pages, taken into a
temporary folder and copied into docs/ only when NEWSLETTER_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import REPO, Newsletter, window
from serving import Server, link_in, mails, serving, text_of, to_of, wait_for_mails

pytestmark = pytest.mark.browser

ADDRESS = "new.reader@example.org"
SCREENSHOTS = ("subscribe", "preferences")
WIDTHS = (375, 1280)
# Read at import: the folder fixtures clear every NEWSLETTER_* variable before a test runs.
UPDATE_SCREENSHOTS = os.environ.get("NEWSLETTER_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture
def server(samples: Newsletter, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    with serving(samples, monkeypatch) as running:
        assert samples.cli("archive").exit_code == 0  # the archive on the same host, its links under its URL
        yield running


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"


def sent_to(root: Path, issue: str, address: str) -> str | None:
    """The text of the issue's email to ``address``, if one was sent."""
    found = [m for m in mails(root, issue) if to_of(m) == address]
    assert len(found) <= 1
    return text_of(found[0]) if found else None


def test_a_reader_signs_up_confirms_changes_topics_and_unsubscribes(
    browser: Browser, server: Server, samples: Newsletter
) -> None:
    with window(browser, 375, 900) as page:
        # From a topic page of the archive to the sign-up form with that topic ticked.
        page.goto(f"{server.url}/topics/therapist-factors/")
        page.get_by_role("link", name="Get the summaries on Therapist Factors by email").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Subscribe")
        expect(page.get_by_label("Therapist Factors")).to_be_checked()
        no_sideways_scroll(page)
        page.get_by_label("Email address").fill(ADDRESS)
        page.get_by_label("Name").fill("Nadia Reader")
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")

        [confirmation] = wait_for_mails(samples.root, "confirm", 1)
        assert to_of(confirmation) == ADDRESS and "Therapist Factors" in text_of(confirmation)
        page.goto(link_in(confirmation, "confirm"))
        assert server.app.store.get(ADDRESS) is None  # opening the link is not confirming
        page.get_by_role("button", name="Confirm my subscription").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")

    # The next send includes them, with the variant of their topic: summary 02 only.
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    first = sent_to(samples.root, "2021-07", ADDRESS)
    assert first is not None and "Dear Nadia Reader," in first
    assert "Psychotherapist burnout affects patient outcomes" in first
    assert "ALSO THIS MONTH" in first and "Adverse Effects" in first.split("ALSO THIS MONTH")[1]

    # Their preferences, from the link in that email: topics for August's issue instead.
    before = samples.cli("audience", "2021-08", env={"COLUMNS": "200"}).stdout
    with window(browser, 1280, 900) as page:
        page.goto(link_in(next(m for m in mails(samples.root, "2021-07") if to_of(m) == ADDRESS), "preferences"))
        expect(page.get_by_label("Therapist Factors")).to_be_checked()
        expect(page.locator("#this-month")).to_contain_text("0 of its 1 summary")
        page.get_by_label("Therapist Factors").uncheck()
        page.get_by_label("Attachment").check()
        page.get_by_role("button", name="Save my topics").click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        expect(page.get_by_label("Attachment")).to_be_checked()
        expect(page.get_by_label("Therapist Factors")).not_to_be_checked()
        expect(page.locator("#this-month")).to_contain_text("1 of its 1 summary")
    after = samples.cli("audience", "2021-08", env={"COLUMNS": "200"}).stdout
    readers = re.compile(r"audience of 2021-08: (\d+) readers")
    assert int(readers.search(after).group(1)) == int(readers.search(before).group(1)) + 1  # type: ignore[union-attr]

    # One click in the mail client: a POST with the RFC 8058 body and nothing else.
    msg = next(m for m in mails(samples.root, "2021-07") if to_of(m) == ADDRESS)
    one_click = re.search(r"<(http[^>]+/unsubscribe/\?t=[^>]+)>", str(msg["List-Unsubscribe"]))
    assert one_click is not None and str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    answer = httpx.post(one_click.group(1), data={"List-Unsubscribe": "One-Click"})
    assert 200 <= answer.status_code < 300
    assert samples.cli("send", "2021-08", "--yes").exit_code == 0
    assert sent_to(samples.root, "2021-08", ADDRESS) is None
    assert sent_to(samples.root, "2021-08", "ana.silva@example.org") is not None  # the others still get it


@pytest.mark.parametrize("width", WIDTHS)
def test_readers_pages_fit_the_screen_and_are_pictured(
    browser: Browser, server: Server, width: int, tmp_path: Path
) -> None:
    token = server.app.links.token("chloe.martin@example.org")
    pages = {"subscribe": "/subscribe/?topic=empathy", "preferences": f"/preferences/?t={token}"}
    with window(browser, width, 900) as page:
        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        for name in SCREENSHOTS:
            page.goto(server.url + pages[name])
            no_sideways_scroll(page)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            shot = tmp_path / f"readers-{name}-{width}.png"
            page.screenshot(path=shot, full_page=True)
            assert shot.stat().st_size > 5000
            if UPDATE_SCREENSHOTS:
                shutil.copy(shot, REPO / "docs" / shot.name)
        assert blocked == []  # the page's own style is allowed by its hash, nothing else needed
