"""What the archive's templates see: issues, summaries and topics as pages, and citation metadata.

``json_ld`` (schema.org) and ``highwire`` (``citation_*`` meta tags) describe
the cited article to reference managers, from the APA citation text; what
does not parse is left out, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from markupsafe import Markup

from newsletter.content import markdown
from newsletter.content.citation import Citation, parse_apa
from newsletter.content.model import Issue, Summary
from newsletter.content.urls import issue_path, summary_path, summary_url, topic_path
from newsletter.settings import Settings

DESCRIPTION_CHARS = 200


@dataclass(frozen=True)
class TopicRef:
    slug: str
    name: str

    @property
    def path(self) -> str:
        return topic_path(self.slug)


@dataclass
class TopicView:
    slug: str
    name: str
    summaries: list[SummaryView] = field(default_factory=list)  # newest issue first, issue order within

    @property
    def path(self) -> str:
        return topic_path(self.slug)

    @property
    def count(self) -> int:
        return len(self.summaries)


@dataclass(frozen=True)
class SummaryView:
    summary: Summary
    issue: IssueView

    @property
    def slug(self) -> str:
        return self.summary.slug

    @property
    def title(self) -> str:
        return self.summary.title

    @property
    def path(self) -> str:
        return summary_path(self.issue.id, self.slug)

    @property
    def topics(self) -> tuple[TopicRef, ...]:
        return tuple(TopicRef(t.slug, t.name) for t in self.summary.topics)

    @property
    def description(self) -> str:
        return _shorten(markdown.to_text(self.summary.body))

    @cached_property
    def citation(self) -> Citation:
        return parse_apa(self.summary.citation)


@dataclass(frozen=True)
class IssueView:
    issue: Issue
    date: datetime  # when it is sent: the date feeds give it
    summaries: list[SummaryView] = field(default_factory=list, compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.issue.id

    @property
    def path(self) -> str:
        return issue_path(self.id)


def _shorten(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:.") + "…"


def json_ld(view: SummaryView, settings: Settings) -> Markup:
    """schema.org ``ScholarlyArticle`` for the cited work, safe inside ``<script>``."""
    summary, cited = view.summary, view.citation
    data: dict[str, Any] = {"@context": "https://schema.org", "@type": "ScholarlyArticle"}
    # The cited work's own title; an unparsed citation still names the work better than our headline.
    data["name"] = data["headline"] = cited.title or cited.text
    if cited.authors:
        data["author"] = [
            {"@type": "Person", "name": f"{a.given} {a.family}", "familyName": a.family, "givenName": a.given}
            if a.given
            else {"@type": "Organization", "name": a.family}
            for a in cited.authors
        ]
    if cited.year:
        data["datePublished"] = cited.year
    if cited.journal:
        data["isPartOf"] = {"@type": "Periodical", "name": cited.journal}
        if cited.volume:
            data["isPartOf"] = {
                "@type": "PublicationVolume",
                "volumeNumber": cited.volume,
                "isPartOf": data["isPartOf"],
            }
        if cited.issue:
            data["isPartOf"] = {"@type": "PublicationIssue", "issueNumber": cited.issue, "isPartOf": data["isPartOf"]}
    if cited.pages:
        data["pagination"] = cited.pages
    if summary.doi:
        data["identifier"] = {"@type": "PropertyValue", "propertyID": "DOI", "value": summary.doi}
    if summary.link:
        data["sameAs"] = data["url"] = summary.link
    data["citation"] = cited.text
    data["subjectOf"] = {
        "@type": "BlogPosting",
        "headline": summary.title,
        "url": summary_url(settings, view.issue.id, summary.slug),
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # "</script>" in a title would end the element; JSON reads \u003c as "<" all the same.
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def highwire(view: SummaryView) -> list[tuple[str, str]]:
    """``citation_*`` meta tags (Highwire Press), as Zotero and Google Scholar read them."""
    cited, summary = view.citation, view.summary
    tags: list[tuple[str, str]] = []
    if cited.title:
        tags.append(("citation_title", cited.title))
    tags += [("citation_author", a.display) for a in cited.authors]
    if cited.year:
        tags.append(("citation_publication_date", cited.year))
    for name, value in (
        ("citation_journal_title", cited.journal),
        ("citation_volume", cited.volume),
        ("citation_issue", cited.issue),
        ("citation_firstpage", cited.first_page),
        ("citation_lastpage", cited.last_page),
        ("citation_doi", summary.doi),
    ):
        if value:
            tags.append((name, value))
    return tags
