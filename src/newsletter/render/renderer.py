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

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment

from newsletter import defaults
from newsletter.content import urls
from newsletter.content.model import Issue, Summary
from newsletter.errors import ConfigError
from newsletter.render.environment import has_template, make_environment, template_folders
from newsletter.render.mjml import MjmlRenderer
from newsletter.render.text import TextRenderer
from newsletter.render.variant import NAME, PREFERENCES_URL, UNSUBSCRIBE_URL, Placeholder, Variant
from newsletter.settings import Settings

HTML_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"
# Preview links are as long as real ones (see links.py: a 22-character token),
# so sizes measured on a preview are the sizes readers get.
PREVIEW_TOKEN = "preview-not-a-real-tok"
POSTAL_ADDRESS_UNSET = "[postal address not set]"


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


def fill_sample(variant: Variant, base_url: str) -> tuple[str, str]:
    """``(html, text)`` filled for a sample reader, with links as long as real ones."""
    return variant.fill(
        "reader", f"{base_url}/unsubscribe/?t={PREVIEW_TOKEN}", f"{base_url}/preferences/?t={PREVIEW_TOKEN}"
    )


def email_environment(folder: Path, needed: Iterable[str]) -> Environment:
    """The environment over the author's ``folder`` and the packaged defaults, which must hold ``needed``."""
    folders = template_folders(folder, defaults.TEMPLATES)
    for name in needed:
        if not has_template(folders, name):  # only if the package itself is broken
            raise ConfigError(f"template {name} not found in {' or '.join(map(str, folders))}")
    return make_environment(*folders)


def newsletter_view(settings: Settings) -> dict[str, str]:
    """What every email's templates see of the newsletter itself (header, footer)."""
    return {
        "name": settings.name,
        "base_url": settings.base_url,
        "postal_address": settings.postal_address.strip() or POSTAL_ADDRESS_UNSET,
    }


class Renderer:
    """Renders issues with the templates of one newsletter folder.

    Build one per run: the Jinja environment (and its template cache) is
    created here, once, for both parts.
    """

    def __init__(self, settings: Settings, templates_dir: Path | None = None) -> None:
        self.settings = settings
        folder = (templates_dir or settings.templates_dir).resolve()
        env = email_environment(folder, (HTML_TEMPLATE, TEXT_TEMPLATE))
        self.templates_dir = folder
        self._html = MjmlRenderer(env, folder)
        self._text = TextRenderer(env, folder)

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
        return Variant(
            issue_id=issue.id,
            key=issue.key_of(chosen),
            slugs=tuple(s.slug for s in issue.summaries if s.slug in chosen),
            subject=issue.subject,
            html=self._html.render(HTML_TEMPLATE, context),
            text=self._text.render(TEXT_TEMPLATE, context),
        )

    @staticmethod
    def _chosen(issue: Issue, slugs: Iterable[str] | None) -> set[str]:
        known = [s.slug for s in issue.summaries]
        chosen = set(known if slugs is None else slugs)
        unknown = sorted(chosen - set(known))
        if unknown:
            raise ValueError(
                f"issue {issue.id} has no summary {', '.join(map(repr, unknown))} (has {', '.join(known)})"
            )
        if not chosen:
            raise ValueError(f"nothing to render: select at least one summary of issue {issue.id}")
        return chosen

    def context(self, issue: Issue, chosen: set[str]) -> dict[str, Any]:
        """The template context of one variant: shared by the HTML and text templates."""
        settings = self.settings
        view_url = self.view_url(issue)
        views = [
            self._view(s, n, urls.summary_url(settings, issue.id, s.slug)) for n, s in enumerate(issue.summaries, 1)
        ]
        shown = [v for v in views if v.slug in chosen]
        left_out = [v for v in views if v.slug not in chosen]
        return {
            "newsletter": newsletter_view(settings),
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
