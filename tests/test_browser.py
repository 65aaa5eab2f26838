"""The email and the preview server in real headless Chromium (the ``browser`` fixture in conftest).

The email tests take the README's screenshots at 375 and 800 px into tmp_path on every run; they
refresh docs/screenshot-375.png and -800.png only when asked:

    NEWSLETTER_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/test_browser.py
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Frame, Page, expect

from newsletter.content.model import Issue
from newsletter.content.workspace import Workspace
from newsletter.render.renderer import Renderer
from newsletter.settings import load_settings
from newsletter.web.preview import PreviewServer

from conftest import REPO, UPDATE_SCREENSHOTS, Newsletter, window

pytestmark = pytest.mark.browser

PHONE, DESKTOP = 375, 800
SUMMARY_FILE = "issues/2021-07/01-adverse-effects.md"
TITLE_01 = "Adverse Effects of Psychotherapy in Patients with Depression"
TITLE_02 = "Psychotherapist burnout affects patient outcomes"
RELOAD_TIMEOUT_MS = 5000


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the email --------------------------------------------------------------------------------


@pytest.fixture
def email(samples: Newsletter, tmp_path: Path) -> tuple[str, Issue]:
    """The full 2021-07 sample issue as one reader gets it, as a file:// URL."""
    # A sender's address, as a real send requires, so the pictures show a finished footer.
    settings = load_settings(
        samples.root, postal_address="PPRNet, School of Psychology, University of Ottawa, Ottawa ON, Canada"
    )
    issue = Workspace(settings).load("2021-07")
    page, _ = (
        Renderer(settings)
        .render(issue)
        .fill(
            "Ana Silva",
            f"{settings.base_url}/unsubscribe/?t=sample-token",
            f"{settings.base_url}/preferences/?t=sample-token",
        )
    )
    path = tmp_path / "2021-07.html"
    path.write_text(page, encoding="utf-8")
    return path.as_uri(), issue


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_email_fits_the_screen_and_shows_every_title(
    browser: Browser, email: tuple[str, Issue], width: int, tmp_path: Path
) -> None:
    url, issue = email
    with window(browser, width) as page:
        page.goto(url)
        assert page.evaluate("window.innerWidth") == width
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the email scrolls sideways"
        for summary in issue.summaries:
            title = page.locator(f"h2#{summary.slug}")
            expect(title).to_have_text(summary.title)
            expect(title).to_be_visible()
            box = title.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        # The README's pictures: taken on every run, into tmp_path; copied to docs/ only when asked.
        shot = tmp_path / f"screenshot-{width}.png"
        page.screenshot(path=shot, full_page=True)
        height = page.evaluate("document.documentElement.scrollHeight")
    assert png_size(shot) == (width, height)  # the whole email, top to bottom
    if UPDATE_SCREENSHOTS:
        shutil.copyfile(shot, REPO / "docs" / shot.name)


def test_email_column_is_600px_and_centred_on_a_desktop(browser: Browser, email: tuple[str, Issue]) -> None:
    url, _ = email
    with window(browser, DESKTOP) as page:
        page.goto(url)
        viewport = page.evaluate("document.documentElement.clientWidth")
        boxes = page.locator(".nl-header, .nl-card").evaluate_all(
            "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.width]; })"
        )
    assert len(boxes) >= 4  # header, intro, two summaries
    for left, width in boxes:
        right = viewport - left - width
        assert 560 <= width <= 640, f"column is {width} px wide"
        assert abs(left - right) <= 4, f"column is off centre: {left} px left, {right} px right"


# --- the preview server -----------------------------------------------------------------------


def frames(page: Page) -> list[Frame]:
    """The content of the two email frames of a variant page (phone first)."""
    found = []
    for handle in page.locator("iframe.email").element_handles():
        frame = handle.content_frame()
        assert frame is not None
        found.append(frame)
    return found


def test_preview_index_links_to_each_variant_at_two_widths(browser: Browser, preview_server: PreviewServer) -> None:
    with window(browser, 1400, 900) as page:
        page.goto(preview_server.url)
        expect(page.locator("h1")).to_have_text("2021-07: Adverse effects of psychotherapy, and therapist burnout")
        # `check`'s findings, as it prints them.
        expect(page.locator(".problems")).to_contain_text(
            "issues/2021-07/02-therapist-burnout.md:14: warning: 'Dalgillo and colleagues' does not match"
        )
        for key in ("all", "01", "02"):
            expect(page.get_by_role("link", name=key, exact=True)).to_be_visible()

        page.get_by_role("link", name="all", exact=True).click()
        expect(page).to_have_url(f"{preview_server.url}variant/all")
        expect(page.locator("iframe.email")).to_have_count(2)
        page.wait_for_load_state("load")  # the frames too
        phone, desktop = frames(page)
        for frame, width in ((phone, PHONE), (desktop, DESKTOP)):
            assert frame.evaluate("window.innerWidth") == width
            expect(frame.locator("h2#adverse-effects")).to_have_text(TITLE_01)
            expect(frame.locator("h2#therapist-burnout")).to_have_text(TITLE_02)
            expect(frame.get_by_text("Dear reader,")).to_be_visible()
        # The frames grow to fit the email: it scrolls with the page, not inside a box.
        for handle in page.locator("iframe.email").element_handles():
            box, inner = handle.bounding_box(), handle.content_frame().evaluate("document.documentElement.scrollHeight")
            assert box is not None and box["height"] >= inner
        expect(page.locator("pre.text")).to_contain_text("PRACTICE IMPLICATIONS")
        expect(page.locator("pre.text")).to_contain_text(TITLE_01)
        expect(page.get_by_text("of Gmail's 102 KB")).to_be_visible()


def test_preview_follows_edits_and_survives_a_broken_file(
    browser: Browser, samples: Newsletter, preview_server: PreviewServer
) -> None:
    source = samples.root / SUMMARY_FILE
    original = source.read_text(encoding="utf-8")
    with window(browser, 1400, 900) as page:
        page.goto(f"{preview_server.url}variant/all")
        phone = page.frame_locator("iframe.email >> nth=0")
        expect(phone.locator("h2#adverse-effects")).to_have_text(TITLE_01)

        # An edit shows up in the open page by itself: the test never navigates.
        source.write_text(original.replace(TITLE_01, "Harms of Psychotherapy for Depression"), encoding="utf-8")
        expect(phone.locator("h2#adverse-effects")).to_have_text(
            "Harms of Psychotherapy for Depression", timeout=RELOAD_TIMEOUT_MS
        )
        expect(page.locator("pre.text")).to_contain_text("Harms of Psychotherapy for Depression")

        # Broken YAML (line 5): the page lists the problem where it is, and the server lives on.
        broken = re.sub(r"^(doi: .*)$", r"\1\n  bad: indent", original, count=1, flags=re.MULTILINE)
        source.write_text(broken, encoding="utf-8")
        expect(page.locator(".problems")).to_contain_text(
            f"{SUMMARY_FILE}:5: error: invalid YAML in front matter", timeout=RELOAD_TIMEOUT_MS
        )
        expect(page.locator("iframe.email")).to_have_count(0)

        source.write_text(original, encoding="utf-8")
        expect(page.locator("iframe.email")).to_have_count(2, timeout=RELOAD_TIMEOUT_MS)
        expect(phone.locator("h2#adverse-effects")).to_have_text(TITLE_01)
        expect(page.locator(".problems")).to_have_count(0)


def test_preview_shows_the_variant_a_reader_gets(browser: Browser, preview_server: PreviewServer) -> None:
    url = preview_server.url
    with window(browser, 1400, 900) as page:
        # 01 has Feedback and Progress Monitoring; 02 has Therapist Factors; both have Depression.
        for topics, key in (
            ("feedback", "01"),
            ("Therapist Factors", "02"),
            ("depression,training", "all"),
            ("all", "all"),
            ("FEEDBACK; routine outcome monitoring", "01"),
        ):
            page.goto(f"{url}?topics={topics}")
            expect(page).to_have_url(re.compile(rf"/variant/{re.escape(key)}\?topics="))
            expect(page.locator(".notice")).to_contain_text("What a reader with")
        expect(page.frame_locator("iframe.email >> nth=0").locator("h2#adverse-effects")).to_have_text(TITLE_01)
        expect(page.frame_locator("iframe.email >> nth=0").get_by_text("Also this month")).to_be_visible()

        page.goto(f"{url}?topics=training")
        expect(page).to_have_url(f"{url}?topics=training")
        expect(page.locator(".notice")).to_have_text(
            re.compile(r"^A reader with topics Training gets nothing this month")
        )

        page.goto(f"{url}?topics=empaty")
        expect(page.locator(".notice")).to_have_text("unknown topic 'empaty'; did you mean 'Empathy'?")

        # The form on the index asks the same question.
        page.goto(url)
        page.get_by_label("What does a reader get?").fill("therapist factors")
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(re.compile(r"/variant/02\?topics=therapist"))
