"""Reading an issue folder into the model (``model.py``), collecting every problem.

An issue is a folder ``issues/YYYY-MM/`` holding ``issue.md`` (subject, intro,
status, optional send_at; body = editor's note) and one ``NN-slug.md`` per
summary. Loading is lenient: it collects every problem with its file and line
and builds as much of the issue as it can, so ``check`` can report them all.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from newsletter.content.model import ISSUE_FILE, ISSUE_NAME, SUMMARY_NAME, Issue, Loaded, Status, Summary
from newsletter.content.sources import Source, parse_source
from newsletter.content.taxonomy import Taxonomy, Topic
from newsletter.errors import ContentError, IssueNotFound, Problem, errors_in

IMPLICATIONS = re.compile(r"^##\s+Practice\s+Implications\s*:?\s*#*\s*$", re.IGNORECASE | re.MULTILINE)
DOI = re.compile(r"^10\.\d{4,9}/\S+$")
DOI_PREFIX = re.compile(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)

ISSUE_FIELDS = {"subject", "intro", "status", "send_at"}
SUMMARY_FIELDS = {"title", "citation", "doi", "url", "topics", "research_type"}


def _text(source: Source, key: str, problems: list[Problem], required: bool = True) -> str:
    value = source.data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            where = source.line_of(key) if key in source.key_lines else 1
            what = "is empty" if key in source.key_lines else "is missing"
            problems.append(Problem(source.path, where, "error", f"required field '{key}' {what}"))
        return ""
    if isinstance(value, (dict, list)):
        problems.append(
            Problem(source.path, source.line_of(key), "error", f"'{key}' must be text, not a {type(value).__name__}")
        )
        return ""
    return " ".join(str(value).split()) if key != "citation" else str(value).strip()


def _unknown_keys(source: Source, allowed: set[str], problems: list[Problem]) -> None:
    for key in source.data:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(sorted(allowed))})"
            problems.append(
                Problem(source.path, source.line_of(key), "warning", f"unknown field '{key}' is ignored{hint}")
            )


def _send_at(source: Source, problems: list[Problem]) -> datetime | None:
    value: Any = source.data.get("send_at")
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(0, 0))
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            value = None
    if not isinstance(value, datetime):
        problems.append(
            Problem(
                source.path,
                source.line_of("send_at"),
                "error",
                f"send_at {source.data['send_at']!r} is not an ISO date-time such as 2021-07-01T09:00:00+01:00",
            )
        )
        return None
    return value


def read_summary(path: Path, taxonomy: Taxonomy) -> tuple[Summary | None, list[Problem]]:
    source, problems = parse_source(path)
    if source is None:
        return None, problems
    _unknown_keys(source, SUMMARY_FIELDS, problems)
    title = _text(source, "title", problems)
    citation = _text(source, "citation", problems)
    research_type = _text(source, "research_type", problems, required=False) or None

    topics: list[Topic] = []
    raw_topics = source.data.get("topics")
    if isinstance(raw_topics, str):
        raw_topics = [raw_topics]
    if not raw_topics:
        line = source.line_of("topics")
        what = "is empty" if "topics" in source.key_lines else "is missing"
        problems.append(Problem(path, line, "error", f"required field 'topics' {what}: list at least one topic"))
    elif not isinstance(raw_topics, list):
        problems.append(Problem(path, source.line_of("topics"), "error", "'topics' must be a list of topic names"))
    else:
        lines = source.item_lines.get("topics") or [source.line_of("topics")] * len(raw_topics)
        for label, line in zip(raw_topics, lines, strict=False):
            topic = taxonomy.get(str(label)) if isinstance(label, (str, int, float)) else None
            if topic is None:
                problems.append(Problem(path, line, "error", taxonomy.unknown_message(str(label))))
            elif topic not in topics:
                topics.append(topic)

    doi = _text(source, "doi", problems, required=False) or None
    if doi:
        doi = DOI_PREFIX.sub("", doi)
        if not DOI.match(doi):
            problems.append(
                Problem(path, source.line_of("doi"), "error", f"doi {doi!r} is not a DOI such as 10.1037/pst0000123")
            )
            doi = None
    url = _text(source, "url", problems, required=False) or None
    if url and not re.match(r"^https?://\S+$", url):
        problems.append(Problem(path, source.line_of("url"), "error", f"url {url!r} must be an absolute http(s) URL"))
        url = None

    headings = list(IMPLICATIONS.finditer(source.body))

    def line_at(offset: int) -> int:
        return source.body_line + source.body.count("\n", 0, offset)

    def first_text(start: int) -> int:
        rest = source.body[start:]
        return start + len(rest) - len(rest.lstrip())

    body_line = line_at(first_text(0))
    if len(headings) > 1:
        problems.append(
            Problem(path, line_at(headings[1].start()), "error", "'## Practice Implications' appears more than once")
        )
    implications_line = body_line
    if headings:
        body = source.body[: headings[0].start()].strip()
        implications = source.body[headings[0].end() :].strip()
        heading_line = line_at(headings[0].start())
        implications_line = line_at(first_text(headings[0].end()))
        if not implications:
            problems.append(Problem(path, heading_line, "error", "the Practice Implications section is empty"))
    else:
        body, implications = source.body.strip(), ""
        problems.append(
            Problem(
                path,
                source.body_line,
                "error",
                "no Practice Implications section: add a line '## Practice Implications' before it",
            )
        )
    if not body:
        problems.append(
            Problem(path, source.body_line, "error", "empty body: write the summary below the front matter")
        )

    match = SUMMARY_NAME.match(path.name)
    slug = match.group(2) if match else path.stem
    summary = Summary(
        slug=slug,
        title=title,
        citation=citation,
        topics=tuple(topics),
        body=body,
        implications=implications,
        path=path,
        doi=doi,
        url=url,
        research_type=research_type,
        field_lines=dict(source.key_lines),
        body_line=body_line,
        implications_line=implications_line,
    )
    return summary, problems


def read_issue(folder: Path, taxonomy: Taxonomy) -> Loaded:
    """Load an issue folder leniently: every problem, and the issue if possible."""
    problems: list[Problem] = []
    if not folder.is_dir():
        raise IssueNotFound(f"no issue {folder.name!r}: {folder} is not a folder")
    if not ISSUE_NAME.match(folder.name):
        problems.append(Problem(folder, 1, "error", "issue folder must be named YYYY-MM, e.g. 2021-07"))

    meta_path = folder / ISSUE_FILE
    source, found = (
        parse_source(meta_path)
        if meta_path.exists() or meta_path.is_symlink()
        else (None, [Problem(meta_path, 1, "error", "missing issue.md (subject, intro and status of the issue)")])
    )
    problems += found
    subject = intro = note = ""
    status: Status = "draft"
    send_at = None
    if source is not None:
        _unknown_keys(source, ISSUE_FIELDS, problems)
        subject = _text(source, "subject", problems)
        intro = _text(source, "intro", problems, required=False)
        if not intro:
            problems.append(
                Problem(
                    meta_path,
                    source.line_of("intro"),
                    "warning",
                    "no intro: inboxes will show the first words of the email as its preview",
                )
            )
        raw_status = source.data.get("status", "draft")
        if raw_status in ("draft", "ready"):
            status = raw_status
        else:
            problems.append(
                Problem(
                    meta_path, source.line_of("status"), "error", f"status {raw_status!r} must be 'draft' or 'ready'"
                )
            )
        send_at = _send_at(source, problems)
        note = source.body.strip()

    summaries: list[Summary] = []
    for path in sorted(folder.iterdir()):
        if path.name == ISSUE_FILE or path.suffix.lower() != ".md":
            continue
        if not SUMMARY_NAME.match(path.name):
            problems.append(
                Problem(path, 1, "warning", "ignored: summary files are named NN-slug.md, e.g. 01-crying-in-therapy.md")
            )
            continue
        summary, found = read_summary(path, taxonomy)
        problems += found
        if summary is not None:
            summaries.append(summary)
    by_title: dict[str, Summary] = {}
    by_slug: dict[str, Summary] = {}
    for summary in summaries:
        key = " ".join(summary.title.casefold().split())
        if key and key in by_title:
            other = by_title[key].path.name
            problems.append(
                Problem(
                    summary.path,
                    summary.line_of("title"),
                    "error",
                    f"duplicate title {summary.title!r}: {other} has the same one",
                )
            )
        if summary.slug in by_slug:
            # 01-x.md and 02-x.md would share one archive URL and one #x anchor in the email.
            problems.append(
                Problem(
                    summary.path,
                    1,
                    "error",
                    f"slug {summary.slug!r} is also the slug of "
                    f"{by_slug[summary.slug].path.name}: each summary needs its own URL (rename one file)",
                )
            )
        by_title.setdefault(key, summary)
        by_slug.setdefault(summary.slug, summary)
    if not any(SUMMARY_NAME.match(p.name) for p in folder.iterdir()):
        problems.append(Problem(folder, 1, "error", "issue has no summaries: add files named NN-slug.md"))

    issue = Issue(
        id=folder.name,
        subject=subject,
        intro=intro,
        status=status,
        summaries=tuple(summaries),
        path=folder,
        note=note,
        send_at=send_at,
    )
    return Loaded(issue, problems)


def load_issue(folder: Path, taxonomy: Taxonomy) -> Issue:
    """Load an issue that must load cleanly; raise ContentError otherwise."""
    loaded = read_issue(folder, taxonomy)
    if errors_in(loaded.problems) or loaded.issue is None:
        raise ContentError(f"issue {folder.name} has errors; run `newsletter check {folder.name}`", loaded.problems)
    return loaded.issue


def issue_folders(issues_dir: Path) -> list[Path]:
    """Every issue folder, oldest first."""
    if not issues_dir.is_dir():
        return []
    return sorted(p for p in issues_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
