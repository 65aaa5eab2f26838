"""Subscriber files: every ``subscribers/*.csv``, validated row by row.

Columns: ``email,name,topics`` and optional ``status``. ``topics`` is a
``;``-separated list of topics (display name, slug or alias, any case) or
``all``. A bad row is reported with its file and line and left out; the rest
of the list goes on.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from email_validator import EmailNotValidError, validate_email

from newsletter.content.sources import read_text
from newsletter.content.taxonomy import ALL, Taxonomy
from newsletter.errors import Problem
from newsletter.support import collector

Status = Literal["active", "unsubscribed", "bounced"]
STATUSES: tuple[Status, ...] = ("active", "unsubscribed", "bounced")
REQUIRED_COLUMNS = ("email", "name", "topics")
# Longer names are shortened: a name goes into the To header (998 octets a
# line at most) and each SendGrid personalization (10,000 bytes at most).
MAX_NAME = 100

# email-validator costs ~70 µs an address, most of a 100k-reader send. Plain
# ASCII addresses of the everyday shape are accepted by it without change, so
# they skip it; anything else (Unicode, quotes, odd domains) takes the full path.
_PLAIN = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}$"
)
_SPECIAL_TLDS = {"arpa", "invalid", "local", "localhost", "onion", "test", "internal", "home", "lan", "corp", "mail"}


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One reader. ``topics`` is None for a reader who wants everything."""

    email: str
    name: str
    topics: frozenset[str] | None
    status: Status
    path: Path
    line: int

    @property
    def key(self) -> str:
        """The address as compared: case-insensitive, as the issue asks."""
        return self.email.lower()


def normalize_email(address: str) -> str:
    """The address in canonical form; raise ValueError with the reason."""
    address = address.strip()
    if (
        _PLAIN.match(address)
        and len(address) <= 254
        and address.index("@") <= 64
        and address.rsplit(".", 1)[1].lower() not in _SPECIAL_TLDS
    ):
        local, domain = address.rsplit("@", 1)
        return f"{local}@{domain.lower()}"
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as err:
        raise ValueError(str(err)) from None
    # An internationalised domain and its punycode (xn--) form are one reader:
    # keep the ASCII form, which every provider and mail server takes.
    return f"{valid.local_part}@{valid.ascii_domain}"


def parse_topics(value: str, taxonomy: Taxonomy) -> tuple[frozenset[str] | None, list[str]]:
    """Topic slugs named in a ``;``-list (None for ``all``) and the unknown labels."""
    labels = [label.strip() for label in value.split(";") if label.strip()]
    if any(label.casefold() == ALL for label in labels):
        return None, []
    slugs: set[str] = set()
    unknown: list[str] = []
    for label in labels:
        topic = taxonomy.get(label)
        if topic is None:
            unknown.append(label)
        else:
            slugs.add(topic.slug)
    return frozenset(slugs), unknown


@dataclass
class SubscriberList:
    """Every valid subscriber, and every problem with the files."""

    subscribers: list[Subscriber]
    problems: list[Problem]

    @property
    def active(self) -> list[Subscriber]:
        return [s for s in self.subscribers if s.status == "active"]


def read_file(
    path: Path,
    taxonomy: Taxonomy,
    seen: dict[str, Subscriber],
    topic_cache: dict[str, tuple[frozenset[str] | None, list[str]]],
) -> tuple[list[Subscriber], list[Problem]]:
    text, problem = read_text(path)
    if problem is not None:
        return [], [problem]
    assert text is not None
    problems: list[Problem] = []
    # Rows end at "\n" only: str.splitlines() would also end one at a form
    # feed, VT, NEL or U+2028 pasted into a name, and shift every later line.
    lines = [line + "\n" for line in text.split("\n")]
    if lines[-1] == "\n":
        lines.pop()
    rows = csv.reader(lines, strict=True)
    try:
        header = next(rows, None)
    except csv.Error as err:
        return [], [Problem(path, 1, "error", f"malformed CSV: {err}")]
    if header is None:
        return [], [Problem(path, 1, "warning", "file is empty: no subscribers")]
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        return [], [
            Problem(
                path,
                1,
                "error",
                f"malformed CSV: header lacks column(s) {', '.join(missing)}; "
                f"expected {','.join(REQUIRED_COLUMNS)}[,status]",
            )
        ]
    index = {name: columns.index(name) for name in (*REQUIRED_COLUMNS, "status") if name in columns}
    found: list[Subscriber] = []
    offset = 0  # lines before the current reader's first line
    line = 1
    while True:
        start = offset + rows.line_num + 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as err:
            # One bad row (a stray quote, an unterminated one, a huge field) is
            # that row's problem alone: read on from the line after it starts.
            problems.append(Problem(path, start, "error", f"malformed CSV: {err}; row skipped"))
            offset = start
            rows = csv.reader(lines[offset:], strict=True)
            continue
        line = start
        if not "".join(row).strip():
            continue
        if len(row) != len(columns):
            problems.append(
                Problem(
                    path, line, "error", f"malformed CSV: {len(row)} fields, header has {len(columns)}; row skipped"
                )
            )
            continue
        cell = {name: row[i].strip() for name, i in index.items()}
        try:
            email = normalize_email(cell["email"])
        except ValueError as err:
            problems.append(Problem(path, line, "error", f"invalid address {cell['email']!r}: {err}"))
            continue
        status = cast(Status, (cell.get("status") or "active").lower())
        if status not in STATUSES:
            problems.append(
                Problem(
                    path, line, "error", f"unknown status {cell['status']!r}; expected one of {', '.join(STATUSES)}"
                )
            )
            continue
        # Readers repeat the same few topic lists; parse each list once.
        parsed = topic_cache.get(cell["topics"])
        if parsed is None:
            parsed = topic_cache[cell["topics"]] = parse_topics(cell["topics"], taxonomy)
        topics, unknown = parsed
        for label in unknown:
            if topics:  # the row still has topics to go by
                problems.append(Problem(path, line, "warning", "ignored " + taxonomy.unknown_message(label)))
            else:
                problems.append(Problem(path, line, "error", taxonomy.unknown_message(label)))
        if topics is not None and not topics:
            if not unknown:
                problems.append(
                    Problem(path, line, "error", "empty topics: list topics separated by ';' or write 'all'")
                )
            continue
        name = " ".join(cell["name"].split())
        if len(name) > MAX_NAME:
            problems.append(
                Problem(path, line, "warning", f"name of {len(name)} characters shortened to its first {MAX_NAME}")
            )
            name = name[:MAX_NAME].rstrip()
        subscriber = Subscriber(email, name, topics, status, path, line)
        earlier = seen.get(subscriber.key)
        if earlier is not None:
            other = f"{earlier.path.parent.name}/{earlier.path.name}"
            where = f"line {earlier.line}" if earlier.path == path else f"{other}:{earlier.line}"
            problems.append(Problem(path, line, "error", f"duplicate address {email}: already on {where}; row skipped"))
            continue
        seen[subscriber.key] = subscriber
        found.append(subscriber)
    return found, problems


@collector.paused()
def read_subscribers(folder: Path, taxonomy: Taxonomy) -> SubscriberList:
    """Read every ``*.csv`` in ``folder`` (sorted by name)."""
    seen: dict[str, Subscriber] = {}
    topic_cache: dict[str, tuple[frozenset[str] | None, list[str]]] = {}
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        found, file_problems = read_file(path, taxonomy, seen, topic_cache)
        subscribers += found
        problems += file_problems
    return SubscriberList(subscribers, problems)
