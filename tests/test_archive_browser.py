"""The web archive in real headless Chromium (the ``browser`` fixture in conftest), opened from disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from newsletter.content.workspace import Workspace
from newsletter.settings import load_settings
from newsletter.web import archive

from conftest import Newsletter, window

pytestmark = pytest.mark.browser

ALL_TITLES = [
    "Patients Crying in Psychotherapy",
    "Adverse Effects of Psychotherapy in Patients with Depression",
    "Psychotherapist burnout affects patient outcomes",
    "The Emotionally Burdened Psychotherapist",
    "Does Clinical Training Lead to Greater Therapist Interpersonal Skills?",
]


@pytest.fixture
def site(samples: Newsletter) -> Path:
    settings = load_settings(samples.root)
    target = samples.root / "site"
    archive.build_site(archive.collect(Workspace(settings)), settings, target)
    return target


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with window(browser, 800, 900) as page:
        yield page


def visible_titles(page: Page) -> list[str]:
    return page.locator("section.month li[data-topics]:visible a").all_inner_texts()


def test_filter_the_home_page_by_topic(page: Page, site: Path) -> None:
    page.goto((site / "index.html").as_uri())
    expect(page.locator("#topic-filter")).to_be_visible()
    expect(page.locator("#topic-links")).to_be_hidden()  # the filter replaces the plain links
    assert visible_titles(page) == ALL_TITLES

    page.locator("input[name=topic][value=empathy]").check()
    assert visible_titles(page) == ["Does Clinical Training Lead to Greater Therapist Interpersonal Skills?"]
    assert page.locator("section.month:visible h2").all_inner_texts() == ["May 2021"]
    expect(page.locator("#topic-status")).to_have_text("Showing 1 summary in 1 issue.")

    # A second topic widens the list: summaries on either.
    page.locator("input[name=topic][value=attachment]").check()
    assert visible_titles(page) == [
        "Patients Crying in Psychotherapy",
        "The Emotionally Burdened Psychotherapist",
        "Does Clinical Training Lead to Greater Therapist Interpersonal Skills?",
    ]
    assert page.locator("section.month:visible h2").all_inner_texts() == ["August 2021", "June 2021", "May 2021"]
    expect(page.locator("#topic-status")).to_have_text("Showing 3 summaries in 3 issues.")

    page.locator("#topic-clear").click()
    assert visible_titles(page) == ALL_TITLES
    expect(page.locator("#topic-status")).to_have_text("")


def test_without_javascript_the_topics_are_links_to_their_pages(browser: Browser, site: Path) -> None:
    with window(browser, 800, 900, java_script_enabled=False) as page:
        page.goto((site / "index.html").as_uri())
        expect(page.locator("#topic-filter")).to_be_hidden()
        assert visible_titles(page) == ALL_TITLES
        page.locator("#topic-links a", has_text="Empathy").click()
        expect(page.locator("h1")).to_have_text("Empathy")
        assert page.url == (site / "topics" / "empathy" / "index.html").as_uri()
        assert page.locator("ol.entries h2 a").all_inner_texts() == [
            "Does Clinical Training Lead to Greater Therapist Interpersonal Skills?"
        ]


def test_pages_load_nothing_from_anywhere(page: Page, site: Path) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    urls = [
        (site / path).as_uri()
        for path in (
            "index.html",
            "2021-07/index.html",
            "2021-07/adverse-effects/index.html",
            "topics/outcomes/index.html",
        )
    ]
    for url in urls:
        page.goto(url)
    assert requests == urls


def test_the_emails_link_to_a_summary_lands_on_it(page: Page, site: Path) -> None:
    page.set_viewport_size({"width": 375, "height": 700})
    page.goto((site / "2021-07" / "index.html").as_uri() + "#therapist-burnout")
    expect(page.locator("#therapist-burnout h2")).to_be_in_viewport()
    # Readable line length: the text column stays near 70 characters on a wide screen.
    page.set_viewport_size({"width": 1400, "height": 900})
    width = page.locator("main").evaluate("e => e.getBoundingClientRect().width")
    assert 500 < width < 800
