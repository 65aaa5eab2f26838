"""Atom feeds (RFC 4287), built as XML trees so escaping is never ours to get wrong.

A feed is plain data (``Feed`` with ``Entry`` items) until ``to_xml``: the
archive fills the data, this module owns the format. Every URL here is
absolute (feed readers resolve nothing), and every date is the issue's send
date, so rebuilding an unchanged archive writes byte-identical feeds.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

ATOM = "http://www.w3.org/2005/Atom"
GENERATOR = "newsletter"


@dataclass(frozen=True)
class Entry:
    id: str  # a permanent IRI: the page's absolute URL
    title: str
    link: str  # absolute URL of the page
    updated: datetime  # timezone-aware
    summary: str  # plain text
    content_html: str = ""  # the page's main content, as HTML


@dataclass(frozen=True)
class Feed:
    id: str
    title: str
    self_url: str  # where this feed is published
    home_url: str  # the web page it mirrors
    author: str
    entries: Sequence[Entry]
    subtitle: str = ""

    @property
    def updated(self) -> datetime:
        """The newest entry's date: a feed changes when an entry does, not when it is rebuilt."""
        return max(e.updated for e in self.entries)


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"Atom dates need a time zone: {moment!r}")
    return moment.isoformat(timespec="seconds")


# ElementTree writes any character it is given, but XML 1.0 forbids most
# control characters: one in a title would make the whole feed unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: _NOT_XML.sub(" ", v) for k, v in attrs.items()})
    if text is not None:
        element.text = _NOT_XML.sub(" ", text)
    return element


def to_xml(feed: Feed) -> bytes:
    """The feed as a UTF-8 Atom document. A feed needs at least one entry (for its date)."""
    if not feed.entries:
        raise ValueError(f"feed {feed.id} has no entries")
    # Plain tag names under an explicit xmlns: ElementTree's default_namespace
    # option refuses Atom's un-namespaced attributes (rel, href).
    root = ET.Element("feed", {"xmlns": ATOM, "xml:lang": "en"})
    _add(root, "id", feed.id)
    _add(root, "title", feed.title)
    if feed.subtitle:
        _add(root, "subtitle", feed.subtitle)
    _add(root, "updated", _rfc3339(feed.updated))
    _add(root, "link", rel="self", type="application/atom+xml", href=feed.self_url)
    _add(root, "link", rel="alternate", type="text/html", href=feed.home_url)
    author = _add(root, "author")
    _add(author, "name", feed.author)
    _add(root, "generator", GENERATOR)
    for item in feed.entries:
        entry = _add(root, "entry")
        _add(entry, "id", item.id)
        _add(entry, "title", item.title)
        _add(entry, "updated", _rfc3339(item.updated))
        _add(entry, "published", _rfc3339(item.updated))
        _add(entry, "link", rel="alternate", type="text/html", href=item.link)
        _add(entry, "summary", item.summary)
        if item.content_html:
            _add(entry, "content", item.content_html, type="html")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode("utf-8")
