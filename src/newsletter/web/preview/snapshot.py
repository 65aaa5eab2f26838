"""The newsletter folder as the preview read it at one version: problems, issue, variants.

A ``Snapshot`` is read whole (a fresh ``Workspace``: ``topics.yaml`` may have changed as
well as the issue) and never updated: after an edit the preview reads a new one. It keeps
``check``'s problems even when the issue does not load, so every page can list them; asking
it for anything that needs the issue then raises a ``ContentError`` carrying them.

Each snapshot has its own ``RenderOnce``, so a variant is rendered at most once per
version, however many pages and frames ask for it, and an edit is never hidden by a cache.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from newsletter.audience.personalise import selection_for
from newsletter.content.model import Issue, Selection
from newsletter.content.taxonomy import ALL, Taxonomy
from newsletter.content.workspace import Workspace
from newsletter.errors import ContentError, NewsletterError, Problem, errors_in
from newsletter.render.renderer import Renderer, fill_sample
from newsletter.render.variant import Variant
from newsletter.settings import Settings


class NotFound(NewsletterError):
    """No such page (a variant the issue does not have, or a mistyped address)."""


class RenderOnce(Renderer):
    """A Renderer that renders each selection once. A snapshot has its own, so an edit is seen."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._done: dict[frozenset[str], Variant] = {}
        # The page and its two frames ask at once; render each variant once, one at a time.
        self._lock = threading.Lock()

    def render(self, issue: Issue, slugs: Iterable[str] | None = None) -> Variant:
        chosen = frozenset(s.slug for s in issue.summaries) if slugs is None else frozenset(slugs)
        with self._lock:
            if chosen not in self._done:
                self._done[chosen] = super().render(issue, chosen)
            return self._done[chosen]


@dataclass
class Snapshot:
    """The newsletter folder as read at one version: ``check``'s problems, and the issue if it loads."""

    version: str
    issue_id: str
    root: Path
    taxonomy: Taxonomy
    problems: list[Problem]
    issue: Issue | None  # None while it has errors
    renderer: Renderer

    @classmethod
    def read(cls, settings: Settings, issue_id: str, version: str) -> Snapshot:
        """Read everything again (a fresh Workspace: topics.yaml may have changed too)."""
        ws = Workspace(settings)
        checked = ws.check(issue_id)
        return cls(version, issue_id, ws.root, ws.taxonomy, checked.problems, checked.issue, RenderOnce(settings))

    def loaded(self) -> Issue:
        if self.issue is None:
            raise ContentError(
                f"issue {self.issue_id} has errors: fix them and this page reloads", errors_in(self.problems)
            )
        return self.issue

    def variants(self) -> dict[str, Selection]:
        """Every variant key (``all``, ``01+02``...) and its selection, full issue first."""
        issue = self.loaded()
        return {issue.key_of(sel): sel for sel in issue.selections()}

    def variant(self, key: str) -> Variant:
        keys = self.variants()
        if key not in keys:
            raise NotFound(f"issue {self.issue_id} has no variant {key!r} (it has {', '.join(keys)})")
        return self.renderer.render(self.loaded(), keys[key])

    def filled(self, key: str) -> tuple[str, str]:
        """``(html, text)`` of a variant for a sample reader, with links as long as real ones."""
        return fill_sample(self.variant(key), self.renderer.settings.base_url)

    def for_reader(self, labels: str) -> tuple[str | None, str]:
        """The variant key a reader with these topics gets (None: nothing), and a sentence saying so.

        ``labels`` are topic names, slugs or aliases separated by commas, or ``all``.
        """
        issue = self.loaded()
        names = [label.strip() for label in re.split(r"[,;]", labels) if label.strip()]
        if not names:
            return None, "No topics given: write topic names, slugs or aliases separated by commas, or all."
        if any(name.casefold() == ALL for name in names):
            return "all", "What a reader with all topics gets: the full issue."
        unknown = [self.taxonomy.unknown_message(name) for name in names if self.taxonomy.get(name) is None]
        if unknown:
            return None, "; ".join(unknown)
        topics = [t for t in (self.taxonomy.get(name) for name in names) if t is not None]
        said = ", ".join(dict.fromkeys(t.name for t in topics))
        selection = selection_for(issue, frozenset(t.slug for t in topics))
        if not selection:
            if self.renderer.settings.send_unmatched:
                return "all", (
                    f"No summary matches {said}; NEWSLETTER_SEND_UNMATCHED is on, so this reader gets the full issue."
                )
            return None, (
                f"A reader with topics {said} gets nothing this month: no summary has any of those "
                "topics, so send skips them (NEWSLETTER_SEND_UNMATCHED=true would send the full issue)."
            )
        key = next(k for k, sel in self.variants().items() if sel == selection)
        return key, f"What a reader with topics {said} gets."
