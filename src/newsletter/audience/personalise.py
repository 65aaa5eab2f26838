"""Who gets what: readers routed to the selection of summaries they get, or skipped with the reason.

A reader with ``all`` gets the full issue; any other reader gets the
summaries sharing at least one topic with their preferences, in issue order.
Readers with the same selection share one rendered variant.

One rule (``Routes``) serves the plan, made from the database's counts of
readers per topic list (``store.tally``), and the send, which streams the
readers and routes each as it comes: neither holds the readers in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from newsletter.audience.choices import topics_of
from newsletter.content.model import Issue, Selection

NO_MATCH = "no summary matches their topics"


class Addressee(NamedTuple):
    """A reader as a send needs them: whom to write to, and the key the ledger knows them by."""

    key: str
    email: str
    name: str


class Tally(NamedTuple):
    """How many readers share a merged topic list, status and suppression (``store.tally``)."""

    topics: str
    status: str
    suppressed: str | None  # why the provider will not deliver to them, or None
    readers: int


def selection_for(issue: Issue, topics: frozenset[str] | None) -> Selection:
    """The summaries a reader with these topic slugs gets (None = all)."""
    if topics is None:
        return tuple(s.slug for s in issue.summaries)
    return tuple(s.slug for s in issue.summaries if any(t.slug in topics for t in s.topics))


@dataclass
class Routes:
    """Where each reader of an issue goes: a selection, or the reason they are skipped."""

    issue: Issue
    send_unmatched: bool = False
    # Readers repeat a few thousand topic lists at most: each is routed once.
    _by_topics: dict[str, Selection | str] = field(default_factory=dict, repr=False)

    def route(self, topics: str, status: str, suppressed: str | None) -> Selection | str:
        """The selection for a reader (topics as stored: ``all`` or slugs joined by ``;``), or why none."""
        if status != "active":
            return status
        if suppressed is not None:
            return suppressed
        found = self._by_topics.get(topics)
        if found is None:
            selection = selection_for(self.issue, topics_of(topics))
            if not selection:
                selection = tuple(s.slug for s in self.issue.summaries) if self.send_unmatched else ()
            found = self._by_topics[topics] = selection or NO_MATCH
        return found


@dataclass
class Audience:
    """The plan for one issue: how many readers get each selection, and how many are skipped why."""

    routes: Routes
    groups: dict[Selection, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def issue(self) -> Issue:
        return self.routes.issue

    @property
    def recipients(self) -> int:
        return sum(self.groups.values())

    def key(self, selection: Selection) -> str:
        """The variant name of a selection, as ``build`` and the ledger call it."""
        return self.issue.key_of(selection)


def plan_audience(issue: Issue, tally: Iterable[Tally], *, send_unmatched: bool = False) -> Audience:
    """The readers per selection and the skipped per reason, from the database's counts."""
    audience = Audience(Routes(issue, send_unmatched))
    for group in tally:
        where = audience.routes.route(group.topics, group.status, group.suppressed)
        if isinstance(where, str):
            audience.skipped[where] = audience.skipped.get(where, 0) + group.readers
        else:
            audience.groups[where] = audience.groups.get(where, 0) + group.readers
    # Full issue first, then larger selections, then issue order: stable output.
    order = {s.slug: i for i, s in enumerate(issue.summaries)}
    audience.groups = dict(sorted(audience.groups.items(), key=lambda kv: (-len(kv[0]), [order[s] for s in kv[0]])))
    return audience
