"""Editorial checks: what ``newsletter check`` says beyond loading errors.

Loading (``content``) catches what makes an issue unusable; these checks
catch what makes it worse: a summary count outside the usual two or three,
a "X and colleagues" that does not match the citation, a citation without a
year, an article readers cannot find, a link that goes nowhere from an inbox,
an email so large Gmail clips it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.content.citation import first_author, has_year
from newsletter.content.loader import read_issue
from newsletter.content.markdown import relative_links
from newsletter.content.model import ISSUE_FILE, Issue, Summary
from newsletter.content.taxonomy import Taxonomy
from newsletter.errors import Problem, errors_in
from newsletter.support.words import plural

COLLEAGUES = re.compile(r"\b([A-Z][\w’'-]+)\s+and\s+colleagues\b")


def _fold(text: str) -> str:
    # "Høglend" and "Hoglend" are the same author to a reader.
    decomposed = unicodedata.normalize("NFKD", text.replace("ø", "o").replace("Ø", "O"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def check_summary(summary: Summary) -> list[Problem]:
    problems: list[Problem] = []
    path = summary.path
    if summary.citation:
        if not has_year(summary.citation):
            problems.append(
                Problem(
                    path, summary.line_of("citation"), "warning", "citation has no year in parentheses, e.g. (2021)"
                )
            )
        author = first_author(summary.citation)
        if author:
            for text, start_line in (
                (summary.body, summary.body_line),
                (summary.implications, summary.implications_line),
            ):
                for match in COLLEAGUES.finditer(text):
                    named = match.group(1)
                    if _fold(named) != _fold(author):
                        line = start_line + text.count("\n", 0, match.start())
                        problems.append(
                            Problem(
                                path,
                                line,
                                "warning",
                                f"'{named} and colleagues' does not match the first author '{author}' of the citation",
                            )
                        )
    if not summary.doi and not summary.url:
        problems.append(
            Problem(path, summary.line_of("title"), "warning", "no doi or url: readers cannot find the article")
        )
    return problems


def check_links(path: Path, text: str, start_line: int) -> list[Problem]:
    """Warn about Markdown links that are not absolute: in an email they lead nowhere."""
    problems = []
    for url in relative_links(text):
        at = text.find(f"]({url}")
        line = start_line + (text.count("\n", 0, at) if at >= 0 else 0)
        problems.append(
            Problem(
                path,
                line,
                "warning",
                f"link {url!r} is not an absolute http(s) or mailto URL: the email shows its text without a link",
            )
        )
    return problems


def check_issue(issue: Issue) -> list[Problem]:
    """Editorial warnings for a loaded issue."""
    problems: list[Problem] = []
    count = len(issue.summaries)
    if count and not 2 <= count <= 3:
        problems.append(
            Problem(
                issue.path / ISSUE_FILE, 1, "warning", f"{plural(count, 'summary')}: an issue usually has two or three"
            )
        )
    for summary in issue.summaries:
        problems += check_summary(summary)
        problems += check_links(summary.path, summary.body, summary.body_line)
        problems += check_links(summary.path, summary.implications, summary.implications_line)
    if issue.note:
        meta = issue.path / ISSUE_FILE
        source = meta.read_text(encoding="utf-8", errors="replace") if meta.is_file() else ""
        at = source.find(issue.note)  # the Issue keeps no line for its note
        problems += check_links(meta, issue.note, source.count("\n", 0, at) + 1 if at >= 0 else 1)
    return problems


@dataclass
class Checked:
    """What ``check`` found in an issue folder, and the issue it loaded (None if it has errors).

    Commands that go on to render or send use ``issue``: the folder is read once.
    """

    issue_id: str
    problems: list[Problem] = field(default_factory=list)
    loaded: Issue | None = None  # whatever loaded, even with errors

    @property
    def errors(self) -> list[Problem]:
        return errors_in(self.problems)

    @property
    def issue(self) -> Issue | None:
        """The issue, if it has no errors."""
        return None if self.errors else self.loaded


def check_folder(folder: Path, taxonomy: Taxonomy) -> Checked:
    """Every problem with an issue folder, loading and editorial (sorted), and the issue."""
    loaded = read_issue(folder, taxonomy)
    problems = list(loaded.problems)
    if loaded.issue is not None:
        problems += check_issue(loaded.issue)
    ordered = sorted(set(problems), key=lambda p: (str(p.path), p.line, p.severity, p.message))
    return Checked(folder.name, ordered, loaded.issue)
