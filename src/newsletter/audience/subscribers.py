"""Subscriber files: every ``subscribers/*.csv``, validated row by row.

Columns: ``email,name,topics`` and optional ``status``. ``topics`` is a
``;``-separated list of topics (display name, slug or alias, any case) or
``all``. A bad row is reported with its file and line and left out; the rest
of the list goes on.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
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
# The topic lists parsed once each, at most: a list rarely seen costs ~3 µs to parse again, and
# a million readers who each wrote theirs in their own order would otherwise keep ~75 MB of them.
TOPIC_LISTS = 4096

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


class _Rewind:
    """The lines of a file for ``csv.reader``, able to read a bad row's lines again from its second.

    One malformed row must not take the rows after it along: an unterminated
    quote swallows the lines that follow, up to the field size limit. Only
    the current row's lines are kept, not the file's.
    """

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._again: list[str] = []  # reversed: the next line to give is the last
        self._taken: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._again.pop() if self._again else next(self._lines)
        self._taken.append(line)
        return line

    def row_starts(self) -> None:
        self._taken.clear()

    def skip_row_start(self) -> None:
        """After a bad row: give its lines again, all but the first."""
        if self._taken:
            self._again.extend(reversed(self._taken[1:]))
        else:
            next(self, None)
        self._taken.clear()


def _text_problem(path: Path) -> Problem | None:
    """What ``read_text`` finds wrong with the file, read a block at a time; None for UTF-8 text.

    A file with a bad byte anywhere gives that problem and no reader, as
    before: so the whole file is checked before its first row is given.
    """
    if path.is_file():
        try:
            decoder = codecs.getincrementaldecoder("utf-8-sig")()
            with open(path, "rb") as file:
                while block := file.read(1 << 20):
                    if b"\x00" in block:
                        break
                    decoder.decode(block)
                else:
                    decoder.decode(b"", final=True)
                    return None
        except (OSError, UnicodeDecodeError):
            pass
    return read_text(path)[1]  # its very message; the whole file read only when something is wrong


def text_lines(path: Path) -> Iterator[str]:
    """The file's lines as ``read_text`` splits them: at "\n", "\r\n" or "\r", each ending in "\n"."""
    # Checked by _text_problem; a file changed since is synced again (its signature moved), so
    # a bad byte here is replaced rather than failing the sync.
    with open(path, encoding="utf-8-sig", errors="replace", newline=None) as file:
        for line in file:
            yield line if line.endswith("\n") else line + "\n"


def subscriber_rows(
    path: Path, taxonomy: Taxonomy, topic_cache: dict[str, tuple[frozenset[str] | None, list[str]]]
) -> Iterator[Subscriber | Problem]:
    """The file's readers and problems in file order, read a line at a time: duplicates are the caller's.

    A reader comes after the problems of its own row (an ignored topic, a long
    name), so that a caller who skips it as a duplicate reports that last.
    """
    problem = _text_problem(path)
    if problem is not None:
        yield problem
        return
    lines = _Rewind(text_lines(path))
    rows = csv.reader(lines, strict=True)
    try:
        header = next(rows, None)
    except csv.Error as err:
        yield Problem(path, 1, "error", f"malformed CSV: {err}")
        return
    if header is None:
        yield Problem(path, 1, "warning", "file is empty: no subscribers")
        return
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        yield Problem(
            path,
            1,
            "error",
            f"malformed CSV: header lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(REQUIRED_COLUMNS)}[,status]",
        )
        return
    index = {name: columns.index(name) for name in (*REQUIRED_COLUMNS, "status") if name in columns}
    offset = 0  # lines before the current reader's first line
    while True:
        start = offset + rows.line_num + 1
        lines.row_starts()
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as err:
            # One bad row (a stray quote, an unterminated one, a huge field) is
            # that row's problem alone: read on from the line after it starts.
            yield Problem(path, start, "error", f"malformed CSV: {err}; row skipped")
            offset = start
            lines.skip_row_start()
            rows = csv.reader(lines, strict=True)
            continue
        line = start
        if not "".join(row).strip():
            continue
        if len(row) != len(columns):
            yield Problem(
                path, line, "error", f"malformed CSV: {len(row)} fields, header has {len(columns)}; row skipped"
            )
            continue
        cell = {name: row[i].strip() for name, i in index.items()}
        try:
            email = normalize_email(cell["email"])
        except ValueError as err:
            yield Problem(path, line, "error", f"invalid address {cell['email']!r}: {err}")
            continue
        status = cast(Status, (cell.get("status") or "active").lower())
        if status not in STATUSES:
            yield Problem(
                path, line, "error", f"unknown status {cell['status']!r}; expected one of {', '.join(STATUSES)}"
            )
            continue
        # Readers repeat the same few topic lists; parse each list once.
        parsed = topic_cache.get(cell["topics"])
        if parsed is None:
            parsed = parse_topics(cell["topics"], taxonomy)
            if len(topic_cache) < TOPIC_LISTS:
                topic_cache[cell["topics"]] = parsed
        topics, unknown = parsed
        for label in unknown:
            if topics:  # the row still has topics to go by
                yield Problem(path, line, "warning", "ignored " + taxonomy.unknown_message(label))
            else:
                yield Problem(path, line, "error", taxonomy.unknown_message(label))
        if topics is not None and not topics:
            if not unknown:
                yield Problem(path, line, "error", "empty topics: list topics separated by ';' or write 'all'")
            continue
        name = " ".join(cell["name"].split())
        if len(name) > MAX_NAME:
            yield Problem(path, line, "warning", f"name of {len(name)} characters shortened to its first {MAX_NAME}")
            name = name[:MAX_NAME].rstrip()
        yield Subscriber(email, name, topics, status, path, line)


def duplicate(subscriber: Subscriber, path: Path, line: int) -> Problem:
    """The problem of a row whose address is already on ``path``:``line``."""
    where = f"line {line}" if path == subscriber.path else f"{path.parent.name}/{path.name}:{line}"
    return Problem(
        subscriber.path,
        subscriber.line,
        "error",
        f"duplicate address {subscriber.email}: already on {where}; row skipped",
    )


def subscriber_files(folder: Path, taxonomy: Taxonomy) -> Iterator[Subscriber | Problem]:
    """Every ``*.csv`` in ``folder`` (sorted by name), a row at a time: ``subscriber_rows`` of each."""
    topic_cache: dict[str, tuple[frozenset[str] | None, list[str]]] = {}
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        yield from subscriber_rows(path, taxonomy, topic_cache)


@collector.paused()
def read_subscribers(folder: Path, taxonomy: Taxonomy) -> SubscriberList:
    """Read every ``*.csv`` in ``folder`` (sorted by name)."""
    seen: dict[str, Subscriber] = {}
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    for item in subscriber_files(folder, taxonomy):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        earlier = seen.get(item.key)
        if earlier is not None:
            problems.append(duplicate(item, earlier.path, earlier.line))
            continue
        seen[item.key] = item
        subscribers.append(item)
    return SubscriberList(subscribers, problems)
