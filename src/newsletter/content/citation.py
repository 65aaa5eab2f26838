"""APA citations → structured metadata, best effort, for reference managers.

The archive describes each cited article to machines (schema.org JSON-LD and
Highwire ``citation_*`` tags, which Zotero reads). Authors write citations as
APA 7 text, so we parse that text, and whatever does not parse is left out:
``parse_apa`` never raises, and a field it cannot find is ``None`` or empty.

    Genova, F., Zingaretti, P., & Hilsenroth, M. (2021). Patients’ crying
    experiences in psychotherapy. Psychotherapy, 58(1), 160–171.
    └────────────── authors ───────────────────┘ year  └─ title ─┘
                                  journal ─┘  volume(issue), pages ─┘
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.content.markdown import plain

# "(2021)", "(2021a)", "(2021, March 3)", "(n.d.)", "(in press)": the first one ends the authors.
# Digits are ASCII ([0-9], not \d, which takes any script's): metadata wants a year like 2021.
YEAR = re.compile(r"\(\s*(?P<year>[0-9]{4})[a-z]?(?:,[^)]*)?\)\.?|\((?:n\.\s?d\.|in press)\)\.?", re.IGNORECASE)
# Initials: "F.", "J.P.", "H. A.", "M.-C.", "Å."; anything else after a comma is a surname.
INITIALS = re.compile(r"^(?:[^\W\d_][a-z]?\.\s*-?\s*)+$")
# The end of a journal reference: "Journal, 58(1), 160–171." or "Journal, 35, 844-850."
SOURCE = re.compile(
    r"^(?P<title>.+?[.?!])\s+(?P<journal>[^.?!]+?),\s*(?P<volume>[0-9]+)\s*(?:\((?P<issue>[^)]+)\))?"
    r"(?:,\s*(?P<pages>[^,.\s]+(?:\s*[-–—]\s*[^,.\s]+)?))?\s*\.?$"
)
ONLINE_FIRST = re.compile(
    r"\.\s*(?:Advance online publication|Online ahead of print|Epub ahead of print)\.?\s*$", re.IGNORECASE
)
TRAILING_LINK = re.compile(r"\s*(?:https?://\S+|doi:\s*\S+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Author:
    family: str
    given: str = ""  # initials as written ("H. A."); empty for a group author

    @property
    def display(self) -> str:
        """``Surname, Initials``: the form Zotero and Google Scholar read best."""
        return f"{self.family}, {self.given}" if self.given else self.family


@dataclass(frozen=True)
class Citation:
    """What an APA citation says about the cited work; unknown parts are None or empty."""

    text: str
    authors: tuple[Author, ...] = ()
    year: str | None = None
    title: str | None = None
    journal: str | None = None
    volume: str | None = None
    issue: str | None = None
    pages: str | None = None

    @property
    def first_page(self) -> str | None:
        return re.split(r"\s*[-–—]\s*", self.pages)[0] if self.pages else None

    @property
    def last_page(self) -> str | None:
        parts = re.split(r"\s*[-–—]\s*", self.pages) if self.pages else []
        return parts[1] if len(parts) > 1 else None


def has_year(citation: str) -> bool:
    """Whether the citation has APA's year in parentheses: (2021), (2021a), (n.d.), (in press)."""
    return YEAR.search(citation) is not None


def first_author(citation: str) -> str | None:
    """Surname of the first author of an APA citation, if it names one before the year."""
    year = YEAR.search(citation)
    authors = parse_authors(plain(citation[: year.start()] if year else citation.split("(", maxsplit=1)[0]))
    return authors[0].family if authors else None


def parse_apa(text: str) -> Citation:
    """Parse an APA reference as far as it goes; never raises (proven by property tests, not by a catch-all)."""
    # Authors may italicise the journal and volume (*Psychotherapy, 58*): metadata wants bare text.
    flat = " ".join(plain(text).split())
    year_match = YEAR.search(flat)
    if year_match is None:
        return Citation(text=flat)
    authors = parse_authors(flat[: year_match.start()])
    rest = TRAILING_LINK.sub("", flat[year_match.end() :]).strip()
    title = journal = volume = issue = pages = None
    source = SOURCE.match(rest)
    if source:
        title, journal = source.group("title"), source.group("journal")
        volume, issue, pages = source.group("volume"), source.group("issue"), source.group("pages")
    elif ONLINE_FIRST.search(rest):
        # "Title. Journal: Subtitle. Advance online publication." has no volume yet.
        head = ONLINE_FIRST.sub("", rest)
        cut = head.rfind(". ")
        title, journal = (head[: cut + 1], head[cut + 2 :]) if cut > 0 else (head, None)
    else:
        # A book or report: the title is the first sentence; what follows (publisher) is not a journal.
        match = re.match(r"^(.+?[.?!])(?:\s|$)", rest)
        title = match.group(1) if match else rest or None
    return Citation(
        text=flat,
        authors=authors,
        year=year_match.group("year"),
        title=_clean_title(title),
        journal=(journal or "").strip() or None,
        volume=volume,
        issue=issue,
        pages=pages,
    )


def _clean_title(title: str | None) -> str | None:
    if not title:
        return None
    # APA ends a title with a period, which is not part of it; "?" and "!" are.
    title = title.strip()
    return (title[:-1] if title.endswith(".") else title).strip() or None


def parse_authors(text: str) -> tuple[Author, ...]:
    """``Surname, I., Surname, I. I., & Surname, I.`` → authors, in order.

    A part with no initials after it is a group author ("American
    Psychological Association"). "et al." and "..." (APA's 21+ authors) are dropped.
    """
    text = text.strip()
    text = re.sub(r"\s*(?:,\s*)?&\s*", ", ", text)
    # Dropped as a separator, never joining what stood either side of it into one name.
    text = re.sub(r"\bet al\b\.?|\.\.\.|…", ",", text)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    authors: list[Author] = []
    i = 0
    while i < len(parts):
        family = parts[i]
        given = parts[i + 1] if i + 1 < len(parts) and INITIALS.match(parts[i + 1]) else ""
        # A group author ends with APA's period before the year: "Association. (2020)".
        name = family.rstrip(". ")
        if name and not INITIALS.match(family):  # a stray "." is no one
            authors.append(Author(family=name, given=_spaced(given)))
        i += 2 if given else 1
    return tuple(authors)


def _spaced(initials: str) -> str:
    # "J.P." and "J. P." are the same person; write them one way.
    return re.sub(r"\.(?=[^\s.-])", ". ", initials.strip())
