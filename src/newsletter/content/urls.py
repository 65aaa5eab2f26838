"""The public URLs of the web archive, in one place.

The archive writes its pages at these paths, and the email links to them
("view in browser", each summary's title, "Also this month"), so both must
agree on every URL; `tests/test_archive.py` follows the email's links into
a built site to prove it.
"""

from __future__ import annotations

from newsletter.settings import Settings


def issue_path(issue_id: str) -> str:
    return f"{issue_id}/"


def summary_path(issue_id: str, slug: str) -> str:
    return f"{issue_id}/{slug}/"


def topic_path(topic_slug: str) -> str:
    return f"topics/{topic_slug}/"


def absolute(settings: Settings, path: str) -> str:
    """``path`` (relative to the site root) as a public URL under ``NEWSLETTER_BASE_URL``."""
    return f"{settings.base_url}/{path}"


def issue_url(settings: Settings, issue_id: str) -> str:
    """The public page of an issue; the email's "view in browser" link is this URL."""
    return absolute(settings, issue_path(issue_id))


def summary_url(settings: Settings, issue_id: str, slug: str) -> str:
    """The public page of one summary; the email's summary titles link here."""
    return absolute(settings, summary_path(issue_id, slug))


def topic_url(settings: Settings, topic_slug: str) -> str:
    """The public page listing every summary on a topic."""
    return absolute(settings, topic_path(topic_slug))
