"""Mail client support, measured: caniemail's data, then Chromium for what a client lacks.

``caniemail`` (caniemail.com's data, pinned in tests/package.json and run by
tests/caniemail.mjs) lists, per client, each HTML or CSS feature of the
email that client does not support. The test fails on any such finding
not in ``ALLOWED``, where each entry says why the email is still correct
and legible without that feature, and says it in a form Chromium can check:
``strip`` removes the feature, and the email, stripped of everything one
client lacks, must still fit a phone and a desktop, show every title and
keep every text at 4.5:1 contrast. caniemail matches names, not meaning:
an entry may also be a false positive of it, shown by where it points.

Dark mode is measured here too, in both schemes and as Outlook.com shows
it (it ignores prefers-color-scheme and marks what it recolours with
``data-ogsc``/``data-ogsb``; the test sets those attributes).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from newsletter.content.workspace import Workspace
from newsletter.render.renderer import Renderer, fill_sample
from newsletter.settings import load_settings

from conftest import REPO, Newsletter

NODE = shutil.which("node") or "/usr/bin/node"
CANIEMAIL = REPO / "tests" / "caniemail.mjs"
# The clients of the issue, by caniemail's names. Thunderbird is its macOS entry: caniemail 2.0.2's
# data for thunderbird.windows lacks even `padding` (it throws), and Thunderbird renders alike on both.
CLIENTS = (
    "gmail.desktop-webmail",
    "gmail.ios",
    "gmail.android",
    "apple-mail.macos",
    "apple-mail.ios",
    "outlook.windows",
    "outlook.outlook-com",
    "yahoo.desktop-webmail",
    "yahoo.ios",
    "yahoo.android",
    "samsung-email.android",
    "thunderbird.macos",
)
PHONE, DESKTOP = 375, 800


# --- stripping a feature out of the HTML -------------------------------------------------------

_STYLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.S)


def _in_css(html: str, change: Callable[[str], str]) -> str:
    return _STYLE.sub(lambda m: m.group(1) + change(m.group(2)) + m.group(3), html)


def declarations(prop: str) -> Callable[[str], str]:
    """Every ``prop:`` declaration, in style attributes and in ``<head>`` (``height`` spares ``line-height``)."""
    pattern = re.compile(rf"(?<![-\w]){re.escape(prop)}\s*:[^;\"}}]*;?")
    return lambda html: pattern.sub("", html)


def rules(selector_part: str) -> Callable[[str], str]:
    """Every CSS rule whose selector contains ``selector_part``."""
    pattern = re.compile(rf"(?:(?<=[{{}}])|^)[^{{}}]*{re.escape(selector_part)}[^{{}}]*\{{[^{{}}]*\}}")
    return lambda html: _in_css(html, lambda css: pattern.sub("", css))


def media_queries(html: str) -> str:
    return _in_css(html, lambda css: re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css))


def attribute(name: str) -> Callable[[str], str]:
    return lambda html: re.sub(rf'\s{re.escape(name)}="[^"]*"', "", html)


def color_scheme_metas(html: str) -> str:
    return re.sub(r'<meta name="(?:supported-)?color-schemes?"[^>]*>', "", html)


def body_style(html: str) -> str:
    return re.sub(r"<body[^>]*>", "<body>", html, count=1)


@dataclass(frozen=True)
class Allowed:
    """A caniemail finding the email does without, and why."""

    feature: str  # caniemail's title
    clients: tuple[str, ...]  # globs of caniemail client names
    where: str | None  # a regex every finding's source must match (None: caniemail gives no position)
    reason: str
    strip: Callable[[str], str]  # removes the feature; the result must stay legible (Chromium)

    def covers(self, client: str, feature: str, places: list[str]) -> bool:
        return (
            feature == self.feature
            and any(fnmatch.fnmatch(client, glob) for glob in self.clients)
            and (self.where is None or all(re.search(self.where, place) for place in places))
        )


DARK_MODE_OPT_IN = (
    "declares the email's own dark mode; a client that ignores it shows the light design "
    "(or recolours it itself, as Gmail's apps do)"
)
NO_IMAGES = "MJML's reset for <img>; the email has no images (Markdown images become links)"
ALLOWED = (
    Allowed("color-scheme CSS property", ("gmail.*", "outlook.*", "yahoo.*"), r":root\{color-scheme",
            DARK_MODE_OPT_IN, lambda h: declarations("supported-color-schemes")(declarations("color-scheme")(h))),
    Allowed("color-scheme meta tag", ("gmail.*", "apple-mail.ios", "outlook.*", "yahoo.*", "samsung-email.*"),
            r'<meta name="color-scheme"', DARK_MODE_OPT_IN, color_scheme_metas),
    Allowed("@media", ("outlook.windows", "thunderbird.*"), None,
            "media queries only refine: smaller titles and a wider box on phones, MJML's desktop column width, "
            "dark mode; without them the one column is 100% wide up to 600 px, in the light design",
            media_queries),
    Allowed("Attribute selector", ("outlook.windows",), r"\[data-ogs[bc]\]",
            "only the Outlook.com dark-mode rules use it; Outlook for Windows is meant to skip them", rules("[data-ogs")),
    Allowed("Child combinator", ("outlook.windows",), r"\[data-ogsb\] \.nl-\w+ > table",
            "only in the Outlook.com dark-mode rules, which Outlook for Windows is meant to skip", rules("[data-ogs")),
    Allowed("Chaining selectors", ("outlook.windows", "outlook.outlook-com"), r"\.moz-text-html \.mj-column",
            "MJML's column rule for Thunderbird (.moz-text-html): the other clients are meant to skip it",
            rules(".moz-text-html")),
    Allowed("border-radius", ("outlook.windows",), r'class="nl-pill"',
            "the topic pills' round corners; square ones read the same", declarations("border-radius")),
    Allowed("word-spacing", ("outlook.windows",), r'<body style="word-spacing:normal',
            "MJML's word-spacing:normal on <body> is the default value: nothing changes without it",
            declarations("word-spacing")),
    Allowed("outline", ("outlook.windows",), r"img\{", NO_IMAGES, declarations("outline")),
    Allowed("height property", ("yahoo.*",), r"img\{", NO_IMAGES, declarations("height")),
    Allowed("aria-label attribute", ("yahoo.*", "thunderbird.*"), r"<div aria-label=",
            "MJML labels its wrapper with the subject for screen readers; without it the text reads the same",
            attribute("aria-label")),
    Allowed("word-break", ("yahoo.*",), r"nl-doi|word-break:break-word",
            "lets a long DOI or URL break anywhere; the samples' longest links fit a 375 px phone without it",
            declarations("word-break")),
    Allowed("<body> element", ("yahoo.ios", "yahoo.android"), r"<t?body",
            "Yahoo's apps drop <body> and its style; MJML paints the page colour on its wrapper <div> too. "
            "Most findings are <tbody>: caniemail matches 'body' inside it (a false positive)", body_style),
)  # fmt: skip


# --- the sample variants -----------------------------------------------------------------------


def render_variants(root: Path) -> dict[str, str]:
    """Every variant of every issue under ``root`` that passes `check`, as `newsletter build` writes it."""
    ws = Workspace(load_settings(root))
    renderer = Renderer(ws.settings)
    found = {}
    for issue_id in ws.issue_ids():
        loaded = ws.read(issue_id)
        if loaded.issue is None or any(p.severity == "error" for p in loaded.problems):
            continue
        for selection in loaded.issue.selections():
            variant = renderer.render(loaded.issue, selection)
            found[f"{issue_id}/{variant.key}"] = fill_sample(variant, ws.settings.base_url)[0]
    return found


@pytest.fixture(scope="module")
def variants() -> dict[str, str]:
    """The shipped sample issues' variants (rendered once: only read here), with no NEWSLETTER_* from outside."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(("NEWSLETTER_", "SENDGRID_"))]:
            patch.delenv(key)
        found = render_variants(REPO)
    assert len(found) >= 6
    return found


def caniemail(documents: dict[str, str]) -> dict[str, dict[str, dict[str, list[str]]]]:
    """document → client → unsupported feature → where (the source around each finding)."""
    assert (REPO / "tests" / "node_modules" / "caniemail").is_dir(), "run `npm ci --prefix tests` (.ci/run does)"
    run = subprocess.run(
        [NODE, str(CANIEMAIL)],
        input=json.dumps({"clients": CLIENTS, "documents": documents}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def test_no_client_lacks_a_feature_outside_the_reasoned_allowlist(variants: dict[str, str]) -> None:
    found = caniemail(variants)
    unexplained = []
    used: set[Allowed] = set()
    for document, clients in found.items():
        assert set(clients) == set(CLIENTS)
        for client, features in clients.items():
            for feature, places in features.items():
                entry = next((a for a in ALLOWED if a.covers(client, feature, places)), None)
                if entry is None:
                    unexplained.append(f"{document}: {client} lacks {feature!r} at {places[:2]}")
                else:
                    used.add(entry)
    assert not unexplained, "\n".join(unexplained)
    # A stale entry would let a new use of its feature through unexamined.
    assert not [a.feature for a in ALLOWED if a not in used]


def test_the_checker_does_report_what_a_client_lacks() -> None:
    # An honest judge: a feature Outlook for Windows is known to lack is reported, and not allowed.
    page = "<html><body><div style='display:flex;background-image:linear-gradient(red, blue)'>x</div></body></html>"
    features = caniemail({"flex": page})["flex"]["outlook.windows"]
    assert "display:flex" in " ".join(features) or any("flex" in f for f in features), features
    assert not any(a.covers("outlook.windows", f, p) for a in ALLOWED for f, p in features.items())


def test_no_images_so_image_resets_do_nothing(variants: dict[str, str]) -> None:
    assert all("<img" not in page for page in variants.values())


# --- Chromium -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pages(browser: Browser) -> Iterator[dict[int, Page]]:
    """One page per width, reused: each check loads its HTML into it."""
    contexts = {w: browser.new_context(viewport={"width": w, "height": 800}) for w in (PHONE, DESKTOP)}
    yield {w: c.new_page() for w, c in contexts.items()}
    for context in contexts.values():
        context.close()


def show(page: Page, html: str, scheme: str = "light") -> Page:
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    page.set_content(html)
    return page


# Every element with text of its own that is shown: its colour and the first opaque background behind it.
_TEXTS = """() => [...document.body.querySelectorAll('*')].filter(e =>
    [...e.childNodes].some(n => n.nodeType === 3 && n.data.trim()) && e.getClientRects().length
    && getComputedStyle(e).visibility === 'visible'
  ).map(e => {
    let bg = null;
    for (let n = e; n && !bg; n = n.parentElement) {
      const c = getComputedStyle(n).backgroundColor;
      if (!/rgba\\(.*, 0\\)$/.test(c) && c !== 'transparent') bg = c;
    }
    return {text: e.textContent.trim().slice(0, 40), color: getComputedStyle(e).color, background: bg
      || getComputedStyle(document.documentElement).backgroundColor};
  })"""


def _rgb(css: str) -> tuple[float, float, float]:
    values = [float(v) for v in re.findall(r"[\d.]+", css)[:3]]
    return values[0] / 255, values[1] / 255, values[2] / 255


def _luminance(rgb: tuple[float, float, float]) -> float:
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(_rgb(a)), _luminance(_rgb(b))), reverse=True)
    return (high + 0.05) / (low + 0.05)


def low_contrast(page: Page) -> list[str]:
    texts = page.evaluate(_TEXTS)
    assert len(texts) > 20  # the walk really saw the email
    return [
        f"{contrast(t['color'], t['background']):.2f}:1 {t['text']!r} ({t['color']} on {t['background']})"
        for t in texts
        if contrast(t["color"], t["background"]) < 4.5
    ]


def legibility_problems(page: Page, width: int) -> list[str]:
    problems = low_contrast(page)
    if page.evaluate("document.documentElement.scrollWidth") > width:
        problems.append(f"scrolls sideways at {width} px")
    for title in page.locator("h2[id]").all():
        box = title.bounding_box()
        if box is None or box["x"] < 0 or box["x"] + box["width"] > width or box["height"] < 10:
            problems.append(f"title {title.text_content()!r} not shown whole at {width} px")
    return problems


_LEGIBILITY: dict[tuple[int, ...], list[str]] = {}  # clients lacking the same features share one check


@pytest.mark.browser
@pytest.mark.parametrize("client", CLIENTS)
def test_without_what_a_client_lacks_the_email_stays_legible(
    pages: dict[int, Page], variants: dict[str, str], client: str
) -> None:
    lacking = tuple(i for i, a in enumerate(ALLOWED) if any(fnmatch.fnmatch(client, g) for g in a.clients))
    if lacking not in _LEGIBILITY:
        problems = []
        for name, original in variants.items():
            html = original
            for i in lacking:
                assert ALLOWED[i].strip(original) != original, (
                    f"stripping {ALLOWED[i].feature!r} changes nothing: {name}"
                )
                html = ALLOWED[i].strip(html)
            for width in (PHONE, DESKTOP):
                problems += [f"{name} at {width} px: {p}" for p in legibility_problems(show(pages[width], html), width)]
        _LEGIBILITY[lacking] = problems
    assert not _LEGIBILITY[lacking], "\n".join(_LEGIBILITY[lacking])


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark", "outlook.com dark"])
def test_every_text_keeps_4_5_to_1_contrast_in_light_dark_and_outlook_com_dark(
    pages: dict[int, Page], variants: dict[str, str], newsletter: Newsletter, scheme: str
) -> None:
    # Beside the samples: a draft (its banner) with a quote, a list, code and a sub-heading.
    rich = (REPO / "issues" / "2021-07" / "01-adverse-effects.md").read_text(encoding="utf-8")
    extra = "> A quote.\n\n- a *list*\n\n    code\n\n### Sub\n\n## Practice Implications"
    newsletter.issue(
        meta='---\nsubject: "Dark"\nintro: "An *intro*."\nstatus: draft\n---\nA note with a [link](https://e.org).\n',
        summaries={"01-rich.md": rich.replace("## Practice Implications", extra)},
    )
    ws = Workspace(load_settings(newsletter.root))
    draft = fill_sample(Renderer(ws.settings).render(ws.load("2030-01")), ws.settings.base_url)[0]
    for name, html in {**variants, "draft": draft}.items():
        page = show(pages[DESKTOP], html, "dark" if scheme == "dark" else "light")
        if scheme == "outlook.com dark":
            # Outlook.com's dark mode: prefers-color-scheme stays light; these attributes mark its recolouring.
            page.evaluate("for (const a of ['data-ogsc', 'data-ogsb']) document.body.setAttribute(a, '')")
        card = page.locator(".nl-card").first.evaluate("e => getComputedStyle(e).backgroundColor")
        assert (_luminance(_rgb(card)) < 0.1) == (scheme != "light"), f"{name}: the {scheme} rules did not apply"
        assert not low_contrast(page), (name, scheme, low_contrast(page))


@pytest.mark.browser
def test_footer_and_kicker_separators_never_start_a_line_on_a_phone(
    pages: dict[int, Page], variants: dict[str, str]
) -> None:
    # Each visible character's box, in reading order; a "·" must sit on the line of the character before it.
    starts = """() => { const out = []; let previous = null;
      const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        for (let i = 0; i < n.data.length; i++) {
          if (!n.data[i].trim()) continue;
          const range = document.createRange(); range.setStart(n, i); range.setEnd(n, i + 1);
          const box = range.getBoundingClientRect();
          if (!box.width) continue;
          if (n.data[i] === '·') out.push(previous !== null && box.top > previous + 2);
          previous = box.top;
        }
      } return out; }"""
    # Where a line breaks depends on the fonts at hand: phone widths from 300 to 430 px, not just one.
    # (The footer is the same in every variant of an issue; the kicker names the issue's month.)
    page = pages[PHONE]
    try:
        for name, html in ((n, h) for n, h in variants.items() if n.endswith("/all")):
            show(page, html)
            for width in range(300, 431, 3):
                page.set_viewport_size({"width": width, "height": 800})
                found = page.evaluate(starts)
                assert len(found) >= 3 and not any(found), (name, width, found)
    finally:
        page.set_viewport_size({"width": PHONE, "height": 800})
