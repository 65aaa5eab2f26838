"""Rendering: an issue (or a selection of its summaries) → one email's HTML and text.

    Renderer(settings).render(issue, slugs) -> Variant
        ├── email.mjml.j2 ─ Jinja2 ─▶ MJML ─ mjml-python ─▶ HTML ─ premailer ─▶ inlined HTML   (mjml.py)
        └── email.txt.j2  ─ Jinja2 ─▶ wrapped plain text                                     (text.py)

Both parts come from the same template context, built here once per
variant; Markdown goes through ``markdown.py`` for either side. Per-reader
values are placeholder tokens filled in later by ``Variant.fill``
(``variant.py``), so one render serves every reader of the same selection.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from newsletter import urls
from newsletter.content import Issue, Summary
from newsletter.errors import ConfigError
from newsletter.render import markdown
from newsletter.render.mjml import MjmlRenderer
from newsletter.render.text import TextRenderer
from newsletter.render.variant import (NAME, PREFERENCES_URL, TOKENS, UNSUBSCRIBE_URL, Placeholder, Variant,
                                       variant_key)
from newsletter.settings import Settings

__all__ = ["Renderer", "Variant", "TOKENS", "selections", "variant_key", "preview", "size_of", "GMAIL_CLIP_BYTES",
           "SIZE_WARNING_BYTES"]

HTML_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"
# Gmail hides everything after the first 102 KB of a message's HTML behind
# "[Message clipped]" (and with it the unsubscribe link in the footer).
GMAIL_CLIP_BYTES = 102 * 1024
SIZE_WARNING_BYTES = 80 * 1024  # leaves room for a longer month before the clip
# Preview links are as long as real ones (see links.py: a 22-character token),
# so sizes measured on a preview are the sizes readers get.
PREVIEW_TOKEN = "preview-not-a-real-tok"
POSTAL_ADDRESS_UNSET = "[postal address not set]"


def size_of(text: str) -> int:
    """Size in bytes as sent (UTF-8), the unit Gmail clips by."""
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class SummaryView:
    """What the templates see of one summary."""

    number: int  # position in the issue, from 1
    slug: str
    title: str
    citation: str
    link: str | None  # the DOI URL if there is a DOI, else the article URL
    doi_url: str | None
    research_type: str | None
    topics: tuple[str, ...]  # display names
    body: str  # Markdown
    implications: str  # Markdown
    web_url: str  # this summary's own page in the web archive


@dataclass(frozen=True)
class Reader:
    """Per-reader values, as placeholder tokens (see ``variant.py``)."""

    name: Placeholder = Placeholder(NAME)
    unsubscribe_url: Placeholder = Placeholder(UNSUBSCRIBE_URL)
    preferences_url: Placeholder = Placeholder(PREFERENCES_URL)


def _markdown_filter(source: str, heading_level: int = 3) -> Markup:
    return Markup(markdown.to_html(source, heading_level))


def _markdown_inline_filter(source: str) -> Markup:
    return Markup(markdown.inline_html(source))


def _lines_br(text: str) -> Markup:
    """Escape, and keep the author's line breaks (a postal address) as ``<br>``."""
    return Markup("<br>").join(escape(line.strip()) for line in text.strip().splitlines())


def preview(variant: Variant, base_url: str) -> tuple[str, str]:
    """``(html, text)`` filled for a sample reader, with links as long as real ones."""
    return variant.fill("reader", f"{base_url}/unsubscribe/?t={PREVIEW_TOKEN}",
                        f"{base_url}/preferences/?t={PREVIEW_TOKEN}")


def selections(issue: Issue) -> Iterator[tuple[str, ...]]:
    """Every non-empty selection of the issue's summaries, slugs in issue order.

    The full issue comes first, then larger selections before smaller ones
    (the order readers are grouped in).
    """
    slugs = [s.slug for s in issue.summaries]
    for size in range(len(slugs), 0, -1):
        yield from itertools.combinations(slugs, size)


class Renderer:
    """Renders issues with the templates of one newsletter folder.

    Build one per run: the Jinja environments (and their template caches)
    are created here, once.
    """

    def __init__(self, settings: Settings, templates_dir: Path | None = None) -> None:
        self.settings = settings
        folder = (templates_dir or settings.templates_dir).resolve()
        for name in (HTML_TEMPLATE, TEXT_TEMPLATE):
            if not (folder / name).is_file():
                raise ConfigError(f"template {name} not found in {folder}: copy the shipped templates/ folder there")
        self.templates_dir = folder
        self._html = MjmlRenderer(folder, {"markdown": _markdown_filter, "markdown_inline": _markdown_inline_filter,
                                           "lines_br": _lines_br, "md_plain": markdown.plain})
        self._text = TextRenderer(folder)

    def selections(self, issue: Issue) -> Iterator[tuple[str, ...]]:
        """Every non-empty selection of ``issue``'s summaries, full issue first."""
        return selections(issue)

    def view_url(self, issue: Issue) -> str:
        """The web version of the full issue ("view in browser"): its archive page."""
        return urls.issue_url(self.settings, issue.id)

    def render(self, issue: Issue, slugs: Iterable[str] | None = None) -> Variant:
        """Render ``issue`` for the summaries ``slugs`` (None: all), shown in issue order.

        Summaries left out are listed by title under "Also this month" (unless
        ``NEWSLETTER_ALSO_THIS_MONTH`` is off). Raises RenderError if a
        template fails, ValueError for a slug the issue does not have.
        """
        chosen = self._chosen(issue, slugs)
        context = self.context(issue, chosen)
        positions = [i for i, s in enumerate(issue.summaries, 1) if s.slug in chosen]
        return Variant(
            issue_id=issue.id,
            key=variant_key(positions, len(issue.summaries)),
            slugs=tuple(s.slug for s in issue.summaries if s.slug in chosen),
            subject=issue.subject,
            html=self._html.render(HTML_TEMPLATE, context),
            text=self._text.render(TEXT_TEMPLATE, context),
        )

    def mjml(self, issue: Issue, slugs: Iterable[str] | None = None) -> str:
        """The intermediate MJML of a variant (for debugging templates)."""
        return self._html.mjml(HTML_TEMPLATE, self.context(issue, self._chosen(issue, slugs))).source

    @staticmethod
    def _chosen(issue: Issue, slugs: Iterable[str] | None) -> set[str]:
        known = [s.slug for s in issue.summaries]
        chosen = set(known if slugs is None else slugs)
        unknown = sorted(chosen - set(known))
        if unknown:
            raise ValueError(f"issue {issue.id} has no summary {', '.join(map(repr, unknown))} (has {', '.join(known)})")
        if not chosen:
            raise ValueError(f"nothing to render: select at least one summary of issue {issue.id}")
        return chosen

    def context(self, issue: Issue, chosen: set[str]) -> dict[str, Any]:
        """The template context of one variant: shared by the HTML and text templates."""
        settings = self.settings
        view_url = self.view_url(issue)
        views = [self._view(s, n, urls.summary_url(settings, issue.id, s.slug)) for n, s in enumerate(issue.summaries, 1)]
        shown = [v for v in views if v.slug in chosen]
        left_out = [v for v in views if v.slug not in chosen]
        return {
            "newsletter": {
                "name": settings.name,
                "base_url": settings.base_url,
                "postal_address": settings.postal_address.strip() or POSTAL_ADDRESS_UNSET,
            },
            "issue": {
                "id": issue.id,
                "subject": issue.subject,
                "intro": issue.intro,
                "note": issue.note,
                "month": issue.month_label,
                "draft": issue.status == "draft",
            },
            "summaries": shown,
            "also": left_out if settings.also_this_month else [],
            "full": not left_out,
            "view_url": view_url,
            "reader": Reader(),
        }

    @staticmethod
    def _view(summary: Summary, number: int, web_url: str) -> SummaryView:
        return SummaryView(
            number=number,
            slug=summary.slug,
            title=summary.title,
            citation=summary.citation,
            link=summary.link,
            doi_url=summary.doi_url,
            research_type=summary.research_type,
            topics=tuple(t.name for t in summary.topics),
            body=summary.body,
            implications=summary.implications,
            web_url=web_url,
        )
