"""The domain of an issue: ``Issue`` and its ``Summary``s, and the variants a selection makes.

Plain frozen dataclasses, built by ``loader`` and read by every later stage.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from newsletter.content.taxonomy import Topic
from newsletter.errors import Problem

Status = Literal["draft", "ready"]
Selection = tuple[str, ...]  # summary slugs, in issue order
ISSUE_FILE = "issue.md"
ISSUE_NAME = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
SUMMARY_NAME = re.compile(r"^(\d{2})-([a-z0-9]+(?:-[a-z0-9]+)*)\.md$")
FULL = "all"  # the key of the variant with every summary


@dataclass(frozen=True)
class Summary:
    """One article summary, the unit readers are matched on."""

    slug: str
    title: str
    citation: str
    topics: tuple[Topic, ...]
    body: str
    implications: str
    path: Path
    doi: str | None = None
    url: str | None = None
    research_type: str | None = None
    field_lines: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    body_line: int = 1
    implications_line: int = 1

    def line_of(self, key: str) -> int:
        """Line of a front matter field in the source file (1 if absent)."""
        return self.field_lines.get(key, 1)

    @property
    def doi_url(self) -> str | None:
        return f"https://doi.org/{self.doi}" if self.doi else None

    @property
    def link(self) -> str | None:
        """Where the article lives: its DOI if known, else its URL."""
        return self.doi_url or self.url


@dataclass(frozen=True)
class Issue:
    """One month's digest."""

    id: str
    subject: str
    intro: str
    status: Status
    summaries: tuple[Summary, ...]
    path: Path
    note: str = ""
    send_at: datetime | None = None

    @property
    def month(self) -> date:
        year, month = self.id.split("-")
        return date(int(year), int(month), 1)

    @property
    def month_label(self) -> str:
        return self.month.strftime("%B %Y")

    def selections(self) -> Iterator[Selection]:
        """Every non-empty selection of the summaries, slugs in issue order.

        The full issue comes first, then larger selections before smaller ones
        (the order readers are grouped in).
        """
        slugs = [s.slug for s in self.summaries]
        for size in range(len(slugs), 0, -1):
            yield from itertools.combinations(slugs, size)

    def key_of(self, selection: Iterable[str]) -> str:
        """The variant name of a selection: ``all``, else summary positions as ``01+03``."""
        chosen = set(selection)
        positions = [n for n, s in enumerate(self.summaries, 1) if s.slug in chosen]
        return variant_key(positions, len(self.summaries))

    def scheduled_for(self, zone: ZoneInfo, at: time) -> datetime:
        """When it goes out: ``send_at`` if set, else the 1st of its month."""
        if self.send_at is not None:
            return self.send_at if self.send_at.tzinfo else self.send_at.replace(tzinfo=zone)
        return datetime.combine(self.month, at, tzinfo=zone)


@dataclass
class Loaded:
    """What loading an issue produced: the issue (if any) and every problem."""

    issue: Issue | None
    problems: list[Problem] = field(default_factory=list)


def variant_key(positions: list[int], total: int) -> str:
    """``all`` for every summary, else the 1-based positions as ``01+03``."""
    if len(positions) == total:
        return FULL
    return "+".join(f"{p:02d}" for p in positions)
