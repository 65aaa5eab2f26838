"""The readers' emails (confirmation, "your link"): the issue's pipeline, and the issue's checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from newsletter.render.notice import KINDS, NoticeRenderer
from newsletter.render.variant import Variant
from newsletter.settings import load_settings
from test_render import _effective, _hidden, contrast, parse

from conftest import Newsletter, window

LINK = "https://newsletter.example.org/confirm/?t=abc.def&x=<1>"
TOPICS = ["Therapist Factors", "Attendance, Attrition, and Drop-Out", "Trauma and/or PTSD"]


def messages(nl: Newsletter) -> dict[str, tuple[Variant, str, str]]:
    renderer = NoticeRenderer(load_settings(nl.root, postal_address="1 Research Way\nOttawa"))
    found = {}
    for kind in KINDS:
        variant = renderer.message(kind, LINK, TOPICS)
        html, text = variant.fill("Ana <Silva>", "", "")
        found[kind] = (variant, html, text)
    return found


def test_each_email_is_small_complete_and_self_contained(samples: Newsletter) -> None:
    for kind, (variant, page, text) in messages(samples).items():
        assert len(page.encode("utf-8")) < 80 * 1024, kind
        assert page.startswith("<!DOCTYPE html>")
        doc = parse(page)
        assert doc.get("lang") == "en"
        metas = {m.get("name"): m.get("content") for m in doc.iter("meta") if m.get("name")}
        assert metas["color-scheme"] == "light dark"
        assert re.search(r"@media \(prefers-color-scheme: ?dark\)", page)
        assert not list(doc.iter("script")) and not list(doc.iter("img"))
        assert not [link for link in doc.iter("link") if "stylesheet" in (link.get("rel") or "")]
        levels = [int(e.tag[1]) for e in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
        assert levels == [1], levels
        hrefs = [a.get("href") or "" for a in doc.iter("a")]
        assert hrefs and all(re.match(r"^https?://", h) for h in hrefs), hrefs
        # The link and the topics: escaped in the HTML part, as written in the text part; no token left.
        assert LINK.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page
        assert LINK in text and ", ".join(TOPICS[:2]) in " ".join(text.split())
        assert "Ana &lt;Silva&gt;" in page and "Dear Ana <Silva>," in text
        assert "__nl_" not in page and "__nl_" not in text
        assert all(len(line) <= 72 or line.startswith("http") for line in text.splitlines()), kind
        assert variant.subject.endswith("PPRNet Research Digest")


def test_every_visible_text_has_at_least_4_5_to_1_contrast(samples: Newsletter) -> None:
    checked = 0
    for _, page, _ in messages(samples).values():
        for element in parse(page).body.iter():
            if not isinstance(element.tag, str):
                continue
            own_text = (element.text or "").strip() or any((c.tail or "").strip() for c in element)
            if not own_text or _hidden(element):
                continue
            color = _effective(element, "color") or (0.0, 0.0, 0.0)
            background = _effective(element, "background") or (1.0, 1.0, 1.0)
            assert contrast(color, background) >= 4.5, element.text_content()[:40]
            checked += 1
    assert checked > 10


def test_one_message_never_carries_anothers_link(samples: Newsletter) -> None:
    renderer = NoticeRenderer(load_settings(samples.root))
    first = renderer.message("confirm", "https://x.example/confirm/?t=first", ["Empathy"])
    second = renderer.message("confirm", "https://x.example/confirm/?t=second", ["Training"])
    assert "t=first" in first.html and "t=second" not in first.html
    assert "t=second" in second.text and "t=first" not in second.text and "Empathy" not in second.text


@pytest.mark.browser
@pytest.mark.parametrize("width", [375, 800])
def test_each_email_fits_a_phone_and_a_desktop(
    browser: Browser, samples: Newsletter, tmp_path: Path, width: int
) -> None:
    for kind, (_, page, _) in messages(samples).items():
        path = tmp_path / f"{kind}.html"
        path.write_text(page, encoding="utf-8")
        with window(browser, width) as tab:
            tab.goto(path.as_uri())
            assert tab.evaluate("document.documentElement.scrollWidth") <= width, kind
            button = tab.get_by_role("link", name=re.compile("my subscription"))
            box = button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
