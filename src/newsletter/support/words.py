"""Counting words for messages people read: ``3 errors``, ``1 summary``, ``90 minutes``."""

from __future__ import annotations

from datetime import timedelta


def plural(n: int, words: str) -> str:
    """``1 error``, ``2 errors``, ``2 summaries``, ``3 suppressed addresses``: the last word agrees."""
    if n == 1:
        return f"{n} {words}"
    if words.endswith(("s", "x", "ch", "sh")):
        return f"{n} {words}es"
    if words.endswith("y") and words[-2:-1] not in ("a", "e", "i", "o", "u"):
        return f"{n} {words[:-1]}ies"
    return f"{n} {words}s"


def human(span: timedelta) -> str:
    """``3 days``, ``12 hours``, ``90 minutes``, ``45 seconds``: the largest unit that divides evenly."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            return plural(seconds // size, unit)
    return plural(seconds, "second")
