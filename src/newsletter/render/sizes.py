"""How big an email is, against the one limit that matters: Gmail clips HTML over 102 KB.

A clipped email hides everything after the cut behind "[Message clipped]",
the footer's unsubscribe link included. ``build``, ``check`` and the preview
all judge a size here, the same way.
"""

from __future__ import annotations

from typing import Literal

from newsletter.content.model import ISSUE_FILE, Issue
from newsletter.errors import Problem
from newsletter.render.renderer import Renderer, fill_sample

GMAIL_CLIP_BYTES = 102 * 1024
SIZE_WARNING_BYTES = 80 * 1024  # leaves room for a longer month before the clip
Verdict = Literal["ok", "close", "clipped"]


def size_of(text: str) -> int:
    """Size in bytes as sent (UTF-8), the unit Gmail clips by."""
    return len(text.encode("utf-8"))


def verdict(size: int) -> Verdict:
    """``ok``, ``close`` (over 80 KB) or ``clipped`` (over Gmail's 102 KB) for an HTML part of ``size`` bytes."""
    if size > GMAIL_CLIP_BYTES:
        return "clipped"
    return "close" if size > SIZE_WARNING_BYTES else "ok"


def check_sizes(issue: Issue, renderer: Renderer) -> list[Problem]:
    """Error if the full issue's HTML is over Gmail's clipping limit; warn over 80 KB.

    The full issue is the largest variant: every other one leaves summaries out.
    """
    html, _ = fill_sample(renderer.render(issue), renderer.settings.base_url)
    size = size_of(html)
    where = issue.path / ISSUE_FILE
    kb = f"{size / 1024:.1f} KB"
    judged = verdict(size)
    if judged == "clipped":
        return [
            Problem(
                where,
                1,
                "error",
                f"the full issue is {kb} of HTML: Gmail clips email over 102 KB, "
                "hiding the rest and the unsubscribe link; shorten or split the issue",
            )
        ]
    if judged == "close":
        return [Problem(where, 1, "warning", f"the full issue is {kb} of HTML, close to Gmail's 102 KB clipping limit")]
    return []
