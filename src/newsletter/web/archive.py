"""``newsletter archive``: every ready issue as a static web site, with Atom feeds.

    Workspace ─ collect() ─▶ Archive (ready issues) ─ build_site() ─▶ site/
        index.html                    months newest first; a topic filter (inline script)
        feed.xml                      Atom, one entry per issue
        YYYY-MM/index.html            the issue's web version: the email's "view in browser"
        YYYY-MM/<slug>/index.html     one summary, with citation metadata for Zotero
        topics/<slug>/index.html      every summary on one topic, across months
        topics/<slug>/feed.xml        Atom, one entry per summary on that topic

Pages come from issue sources only, through their own templates
(``templates/web/``): no reader, no greeting, no personal link can reach
them. Drafts never appear. Links between pages are relative and name
``index.html``, so the site works opened from disk as well as served from any
folder of a web server; what leaves the site (canonical links, feeds,
JSON-LD) is absolute under ``NEWSLETTER_BASE_URL``. Nothing is fetched:
CSS and the one script are inline. Dates come from the issues' send dates,
never the clock, so an unchanged archive rebuilds byte for byte.

The site is written next to its target and swapped in at the end, like
``newsletter build``: a failed build leaves the previous site intact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from markupsafe import Markup

from newsletter import defaults
from newsletter.content import markdown
from newsletter.content.loader import issue_folders, read_issue
from newsletter.content.model import ISSUE_FILE, Issue
from newsletter.content.sources import parse_source
from newsletter.content.urls import absolute, issue_url, summary_url, topic_url
from newsletter.content.workspace import Workspace
from newsletter.errors import ConfigError, NewsletterError, Problem, errors_in
from newsletter.render.environment import has_template, make_environment, template_error, template_folders
from newsletter.settings import Settings
from newsletter.support.files import staged_folder
from newsletter.web import feeds
from newsletter.web.views import IssueView, SummaryView, TopicView, highwire, json_ld

DEFAULT_FOLDER = "site"  # in the newsletter folder, unless --out says otherwise
WEB_TEMPLATES = "web"
TEMPLATES = ("home.html.j2", "issue.html.j2", "summary.html.j2", "topic.html.j2", "entry.html.j2")
INDEX = "index.html"
FEED = "feed.xml"
# Written into every site we build: only a folder holding it is ever replaced,
# so `--out ~` cannot wipe a home folder.
MARKER = ".newsletter-archive"
# Feeds carry the newest entries only, with their full text; the pages keep every month.
FEED_ENTRIES = 20


# --- what goes in: ready issues only ----------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A folder left out for errors: an issue marked ready that does not load cleanly."""

    issue_id: str
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class Archive:
    issues: tuple[Issue, ...]  # ready, newest first
    drafts: tuple[str, ...] = ()  # left out on purpose
    skipped: tuple[Skipped, ...] = ()  # left out for errors: the command fails


def collect(ws: Workspace) -> Archive:
    """Every ready issue that loads cleanly; drafts and broken issues are left out and named.

    One broken issue does not stop the others: it is reported in ``skipped``.
    """
    issues: list[Issue] = []
    drafts: list[str] = []
    skipped: list[Skipped] = []
    for folder in issue_folders(ws.settings.issues_dir):
        meta_path = folder / ISSUE_FILE
        loaded = read_issue(folder, ws.taxonomy)
        errors = errors_in(loaded.problems)
        status = loaded.issue.status if loaded.issue is not None else None
        if status == "draft" and any(p.path == meta_path for p in errors):
            # A broken issue.md reads as a draft; its own status line says whether it is one.
            meta, _ = parse_source(meta_path)
            status = meta.data.get("status", "draft") if meta is not None else None
        if status == "draft":
            drafts.append(folder.name)  # a draft may be half-written: its errors are not ours to report
            continue
        if loaded.issue is not None and status == "ready" and not errors:
            issues.append(loaded.issue)
        else:
            skipped.append(Skipped(folder.name, tuple(errors)))
    issues.sort(key=lambda i: i.id, reverse=True)
    return Archive(tuple(issues), tuple(drafts), tuple(skipped))


# --- writing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """What ``build_site`` wrote."""

    target: Path
    issues: int
    summaries: int
    topics: int
    pages: int
    feeds: int


class Site:
    """Renders an archive with the web templates of one newsletter folder."""

    def __init__(self, settings: Settings, templates_dir: Path | None = None) -> None:
        self.settings = settings
        folder = (templates_dir or settings.templates_dir / WEB_TEMPLATES).resolve()
        folders = template_folders(folder, defaults.TEMPLATES / WEB_TEMPLATES)
        for name in TEMPLATES:
            if not has_template(folders, name):  # only if the package itself is broken
                raise ConfigError(f"template {WEB_TEMPLATES}/{name} not found in {' or '.join(map(str, folders))}")
        self.templates_dir = folder
        self.env = make_environment(
            *folders,
            globals_={
                "site": {"name": settings.name, "base_url": settings.base_url},
                "json_ld": lambda v: json_ld(v, settings),
                "highwire": highwire,
            },
        )

    def render(self, template: str, path: str, **context: Any) -> str:
        """Render ``template`` as the page at ``path`` (site-relative; ``""`` is the home page)."""
        here = path.split("/")[:-1]  # "2021-07/slug/" → ["2021-07", "slug"]; home → []

        def href(target: str) -> str:
            # Relative, naming index.html: works from disk and under any folder of a server.
            # (Plain string work: posixpath.relpath was a third of the rendering time.)
            parts = (target + INDEX if target == "" or target.endswith("/") else target).split("/")
            common = 0
            while common < min(len(here), len(parts) - 1) and here[common] == parts[common]:
                common += 1
            return "../" * (len(here) - common) + "/".join(parts[common:])

        try:
            return self.env.get_template(template).render(href=href, canonical=absolute(self.settings, path), **context)
        except TemplateError as err:
            raise template_error(err, self.templates_dir) from err

    def fragment(self, template: str, **context: Any) -> str:
        """Render for a feed: every link absolute, since feed readers resolve nothing."""
        try:
            return self.env.get_template(template).render(
                href=lambda target: absolute(self.settings, target), canonical="", **context
            )
        except TemplateError as err:
            raise template_error(err, self.templates_dir) from err


def build_site(
    archive: Archive, settings: Settings, target: Path, progress: Callable[[Issue], None] = lambda issue: None
) -> Built:
    """Write ``archive`` as a site into ``target``, replaced as a whole; ``progress`` per issue."""
    if not archive.issues:
        raise NewsletterError(
            "no ready issue to archive: drafts are never published (set status: ready in an issue's issue.md)"
        )
    site = Site(settings)
    _check_replaceable(target)
    with staged_folder(target) as staging:
        return _write(archive, site, staging, target, progress)


def _views(issues: Iterable[Issue], settings: Settings) -> tuple[list[IssueView], list[TopicView]]:
    topics: dict[str, TopicView] = {}
    views = []
    for issue in issues:
        view = IssueView(issue, issue.scheduled_for(settings.zone, settings.send_time))
        for summary in issue.summaries:
            item = SummaryView(summary, view)
            view.summaries.append(item)
            for topic in summary.topics:
                topics.setdefault(topic.slug, TopicView(topic.slug, topic.name)).summaries.append(item)
        views.append(view)
    return views, sorted(topics.values(), key=lambda t: t.name.casefold())


def _write(archive: Archive, site: Site, out: Path, target: Path, progress: Callable[[Issue], None]) -> Built:
    settings = site.settings
    issues, topics = _views(archive.issues, settings)
    pages = 0

    def page(path: str, template: str, **context: Any) -> None:
        nonlocal pages
        folder = out / path
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INDEX).write_text(site.render(template, path, **context), encoding="utf-8", newline="\n")
        pages += 1

    for i, issue in enumerate(issues):
        newer = issues[i - 1] if i > 0 else None
        older = issues[i + 1] if i + 1 < len(issues) else None
        page(issue.path, "issue.html.j2", issue=issue, newer=newer, older=older)
        for summary in issue.summaries:
            page(summary.path, "summary.html.j2", issue=issue, summary=summary)
        progress(issue.issue)
    page("", "home.html.j2", issues=issues, topics=topics)
    for topic in topics:
        page(topic.path, "topic.html.j2", topic=topic)

    # A summary is in up to three topic feeds and the issue feed: render its entry once.
    articles: dict[str, Markup] = {}

    def article(view: SummaryView) -> Markup:
        if view.path not in articles:
            articles[view.path] = Markup(site.fragment("entry.html.j2", issue=view.issue, summary=view, parts=[]))
        return articles[view.path]

    home = absolute(settings, "")
    written = [
        (
            out / FEED,
            feeds.Feed(
                id=home,
                title=settings.name,
                subtitle="Every issue of the digest",
                self_url=absolute(settings, FEED),
                home_url=home,
                author=settings.name,
                entries=[
                    feeds.Entry(
                        id=issue_url(settings, issue.id),
                        title=f"{issue.issue.month_label}: {issue.issue.subject}",
                        link=issue_url(settings, issue.id),
                        updated=issue.date,
                        summary=markdown.plain(issue.issue.intro) or "; ".join(s.title for s in issue.summaries),
                        content_html=site.fragment(
                            "entry.html.j2", issue=issue, summary=None, parts=[article(s) for s in issue.summaries]
                        ),
                    )
                    for issue in issues[:FEED_ENTRIES]
                ],
            ),
        )
    ]
    for topic in topics:
        url = topic_url(settings, topic.slug)
        written.append(
            (
                out / topic.path / FEED,
                feeds.Feed(
                    id=url,
                    title=f"{settings.name}: {topic.name}",
                    subtitle=f"Summaries on {topic.name}",
                    self_url=url + FEED,
                    home_url=url,
                    author=settings.name,
                    entries=[
                        feeds.Entry(
                            id=summary_url(settings, s.issue.id, s.slug),
                            title=s.title,
                            link=summary_url(settings, s.issue.id, s.slug),
                            updated=s.issue.date,
                            summary=s.description,
                            content_html=article(s),
                        )
                        for s in topic.summaries[:FEED_ENTRIES]
                    ],
                ),
            )
        )
    for path, feed in written:
        path.write_bytes(feeds.to_xml(feed))
    (out / MARKER).write_text(
        "Built by `newsletter archive`; the whole folder is replaced on every build.\n", encoding="utf-8"
    )
    return Built(target, len(issues), sum(len(i.summaries) for i in issues), len(topics), pages, len(written))


def _check_replaceable(target: Path) -> None:
    """Refuse to replace anything but a site we built (or an empty folder)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise NewsletterError(f"cannot build the archive into {target}: it is a file")
    if (target / MARKER).is_file() or not any(target.iterdir()):
        return
    raise NewsletterError(
        f"refusing to replace {target}: it is not a site `newsletter archive` built "
        f"(no {MARKER} file); choose another --out folder"
    )
