"""The readers' pages as HTML responses: the archive's templates (``templates/web/readers/``), each with its own CSP."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.responses import HTMLResponse

from newsletter.audience.choices import Topics
from newsletter.audience.personalise import selection_for
from newsletter.content.model import Issue
from newsletter.content.workspace import Workspace
from newsletter.errors import NewsletterError
from newsletter.web.archive import Site
from newsletter.web.readers.guard import csp_for

# How long the newest issue is kept before its folder is read again (the preferences page shows it).
ISSUE_TTL = 60.0


@dataclass(frozen=True)
class ThisMonth:
    label: str
    count: int
    total: int


class Pages:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.site = Site(ws.settings)
        self._issue: tuple[float, Issue | None] = (0.0, None)
        self._lock = threading.Lock()

    def render(self, template: str, path: str, code: int = 200, **context: Any) -> HTMLResponse:
        """``templates/web/readers/TEMPLATE`` as the page at ``path``, answered with HTTP status ``code``."""
        page = self.site.render(f"readers/{template}", path, **context)
        return HTMLResponse(page, status_code=code, headers={"Content-Security-Policy": csp_for(page)})

    def message(
        self, path: str, heading: str, *paragraphs: str, links: list[tuple[str, str]] | None = None, code: int = 200
    ) -> HTMLResponse:
        return self.render(
            "message.html.j2", path, code=code, heading=heading, paragraphs=paragraphs, links=links or []
        )

    def topics(self, chosen: Topics) -> list[tuple[str, str, bool]]:
        return [(t.slug, t.name, chosen is not None and t.slug in chosen) for t in self.ws.taxonomy]

    def newest_issue(self) -> Issue | None:
        """The newest ready issue that loads cleanly (kept for a minute)."""
        with self._lock:
            loaded_at, issue = self._issue
            if time.monotonic() - loaded_at < ISSUE_TTL:
                return issue
            issue = None
            for issue_id in reversed(self.ws.issue_ids()):
                try:
                    candidate = self.ws.read(issue_id).issue
                except NewsletterError:
                    continue
                if candidate is not None and candidate.status == "ready":
                    issue = candidate
                    break
            self._issue = (time.monotonic(), issue)
            return issue

    def this_month(self, topics: Topics) -> ThisMonth | None:
        issue = self.newest_issue()
        if issue is None:
            return None
        return ThisMonth(issue.month_label, len(selection_for(issue, topics)), len(issue.summaries))
