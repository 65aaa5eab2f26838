"""The preview's HTML pages, rendered from the Jinja templates shipped in ``templates/``.

    base.html.j2       the layout: title, style (``_style.css``), live-reload script (``_reload.js``)
    index.html.j2      ``/``: the topics form, ``check``'s verdict and problems, summaries, variants
    variant.html.j2    ``/variant/<key>``: the email in two frames, its sizes, and its text part
    error.html.j2      a page that cannot be shown: the error, and the problems behind it
    not_found.html.j2  a mistyped address or a variant the issue does not have
    _macros.html.j2    the problem list (``path:line: severity: message``) and a size against Gmail's limit

They are the tool's own pages, not the author's, so they ship inside the package (like
``render/templates/build-index.html.j2``) instead of living in the newsletter folder's
``templates/``, and a broken email template can never break the page that reports it.
They are rendered with the project's one environment (``make_environment``), made once
per ``Pages``: autoescape is on for ``.html.j2``, so this module hands the templates
plain text (titles, messages, the author's topics) and never HTML.

Every page is built at a version and carries it: the script polls ``/__version`` and
reloads the page when it differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from newsletter.content import urls
from newsletter.content.model import Issue
from newsletter.errors import Problem, errors_in
from newsletter.render.environment import make_environment, render_template
from newsletter.render.sizes import GMAIL_CLIP_BYTES, check_sizes, size_of, verdict
from newsletter.settings import Settings
from newsletter.support.words import plural
from newsletter.web.archive import DEFAULT_FOLDER as SITE_FOLDER
from newsletter.web.archive import INDEX
from newsletter.web.preview.snapshot import Snapshot

TEMPLATES = Path(__file__).parent / "templates"
PHONE_WIDTH = 375
DESKTOP_WIDTH = 800
POLL_MS = 500  # how often an open page asks for /__version


@dataclass(frozen=True)
class Size:
    """A part's size in bytes (UTF-8, as sent), and how it reads against Gmail's clipping limit."""

    bytes: int

    @property
    def kb(self) -> str:
        return f"{self.bytes / 1024:.1f}"

    @property
    def share(self) -> str:
        """Of Gmail's limit, e.g. ``45%``."""
        return f"{self.bytes / GMAIL_CLIP_BYTES:.0%}"

    @property
    def verdict(self) -> str:
        """``ok``, ``close`` or ``clipped``: also the CSS class that colours it."""
        return verdict(self.bytes)


@dataclass(frozen=True)
class VariantRow:
    """A line of the index's table of variants."""

    key: str
    href: str
    shown: str  # the summaries it has
    html: Size
    text: Size


@dataclass(frozen=True)
class ArchiveLink:
    """Where the issue's web page is published, and whether ``newsletter archive`` writes it yet."""

    public: str
    ready: bool  # a draft is left out of the archive
    local: str | None  # the copy built into site/, served under /site/, if there is one
    site_folder: str = SITE_FOLDER


def variant_href(key: str) -> str:
    return f"/variant/{quote(key)}"


def problem_lines(problems: Iterable[Problem], root: Path | None) -> list[tuple[str, str]]:
    """``(severity, line)`` for each problem, the line as ``check`` prints it (paths relative to ``root``)."""
    return [(p.severity, p.format(root)) for p in problems]


class Pages:
    """The preview's pages for one newsletter folder, as HTML strings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = make_environment(TEMPLATES, globals_={"gmail_clip_kb": GMAIL_CLIP_BYTES // 1024, "poll_ms": POLL_MS})

    def index(self, snap: Snapshot, topics: str, notice: str | None) -> str:
        """``check``'s verdict and problems, then (if the issue loads) its summaries and variants."""
        issue = snap.issue
        problems = list(snap.problems)
        context: dict[str, Any] = {"issue": issue, "archive": None, "variants": []}
        if issue is not None:
            problems += check_sizes(issue, snap.renderer)  # renders the full issue, cached for the table
            context.update(archive=self._archive_link(issue), variants=self._variant_rows(snap))
        errors = len(errors_in(problems))
        warnings = len(problems) - errors
        return self._render(
            "index.html.j2",
            snap.version,
            title=f"{snap.issue_id}: {issue.subject}" if issue else f"issue {snap.issue_id}",
            notice=notice,
            topics=topics,
            verdict=f"newsletter check {snap.issue_id}: {plural(errors, 'error')}, {plural(warnings, 'warning')}",
            problems=problem_lines(problems, snap.root),
            **context,
        )

    def variant(self, snap: Snapshot, key: str, notice: str | None) -> str:
        """One variant at phone and desktop width, filled for a sample reader, and its text part."""
        variant = snap.variant(key)
        page, text = snap.filled(key)
        titles = {s.slug: s.title for s in snap.loaded().summaries}
        return self._render(
            "variant.html.j2",
            snap.version,
            title=f"{snap.issue_id} · variant {key}",
            notice=notice,
            links=[{"key": k, "href": variant_href(k), "current": k == key} for k in snap.variants()],
            shown="the full issue" if variant.is_full else "; ".join(titles[s] for s in variant.slugs),
            subject=variant.subject,
            html_size=Size(size_of(page)),
            text_size=Size(size_of(text)),
            raw=f"/raw/{quote(key)}",
            frames=[("Phone", PHONE_WIDTH), ("Desktop", DESKTOP_WIDTH)],
            text=text,
        )

    def not_found(self, message: str, version: str) -> str:
        return self._render("not_found.html.j2", version, title="Not found", message=message)

    def error(
        self, title: str, message: str, version: str, problems: Iterable[Problem] = (), root: Path | None = None
    ) -> str:
        """A page that could not be shown: why, and the problems (paths under ``root``) behind it."""
        return self._render(
            "error.html.j2", version, title=title, message=message, problems=problem_lines(problems, root)
        )

    def _render(self, name: str, version: str, **context: Any) -> str:
        return render_template(self.env, name, {"version": version, **context}, TEMPLATES)

    def _archive_link(self, issue: Issue) -> ArchiveLink:
        path = urls.issue_path(issue.id)
        built = (self.settings.root / SITE_FOLDER / path / INDEX).is_file()
        return ArchiveLink(
            public=urls.issue_url(self.settings, issue.id),
            ready=issue.status == "ready",
            local=f"/site/{path}" if built else None,
        )

    def _variant_rows(self, snap: Snapshot) -> list[VariantRow]:
        titles = {s.slug: s.title for s in snap.loaded().summaries}
        rows = []
        for key, selection in snap.variants().items():
            page, text = snap.filled(key)
            shown = "full issue" if key == "all" else "; ".join(titles[s] for s in selection)
            rows.append(VariantRow(key, variant_href(key), shown, Size(size_of(page)), Size(size_of(text))))
        return rows
