"""Who gets what: readers grouped by the selection of summaries they get.

A reader with ``all`` gets the full issue; any other reader gets the
summaries sharing at least one topic with their preferences, in issue order.
Readers with the same selection share one rendered variant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from newsletter.audience.subscribers import Subscriber
from newsletter.content.model import Issue, Selection

NO_MATCH = "no summary matches their topics"


@dataclass
class Audience:
    """The plan for one issue: readers per selection, and who is skipped why."""

    issue: Issue
    groups: dict[Selection, list[Subscriber]] = field(default_factory=dict)
    skipped: list[tuple[Subscriber, str]] = field(default_factory=list)

    @property
    def recipients(self) -> int:
        return sum(len(readers) for readers in self.groups.values())

    def key(self, selection: Selection) -> str:
        """The variant name of a selection, as ``build`` and the ledger call it."""
        return self.issue.key_of(selection)

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            counts[reason] = counts.get(reason, 0) + 1
        return counts


def selection_for(issue: Issue, topics: frozenset[str] | None) -> Selection:
    """The summaries a reader with these topic slugs gets (None = all)."""
    if topics is None:
        return tuple(s.slug for s in issue.summaries)
    return tuple(s.slug for s in issue.summaries if any(t.slug in topics for t in s.topics))


def plan_audience(
    issue: Issue,
    subscribers: Iterable[Subscriber],
    *,
    send_unmatched: bool = False,
    suppressed: Mapping[str, str] | None = None,
) -> Audience:
    """Group active readers by selection; list the rest with the reason.

    ``suppressed`` maps an address (lower case) to why the provider will not
    deliver to it (unsubscribed there, bounced, spam report...).
    """
    suppressed = suppressed or {}
    full = tuple(s.slug for s in issue.summaries)
    audience = Audience(issue)
    # Many readers share a topic set; compute each set's selection once.
    by_topics: dict[frozenset[str] | None, Selection] = {}
    for reader in subscribers:
        if reader.status != "active":
            audience.skipped.append((reader, reader.status))
            continue
        reason = suppressed.get(reader.key)
        if reason is not None:
            audience.skipped.append((reader, reason))
            continue
        selection = by_topics.get(reader.topics)
        if selection is None:
            selection = by_topics[reader.topics] = selection_for(issue, reader.topics)
        if not selection:
            if not send_unmatched:
                audience.skipped.append((reader, NO_MATCH))
                continue
            selection = full
        audience.groups.setdefault(selection, []).append(reader)
    # Full issue first, then larger selections, then issue order: stable output.
    order = {slug: i for i, slug in enumerate(full)}
    audience.groups = dict(sorted(audience.groups.items(), key=lambda kv: (-len(kv[0]), [order[s] for s in kv[0]])))
    return audience
