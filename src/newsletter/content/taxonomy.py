"""The topic taxonomy: loaded from ``issues/topics.yaml``, matched leniently."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from newsletter.content.sources import read_text
from newsletter.errors import ContentError, Problem

ALL = "all"
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True, order=True)
class Topic:
    slug: str
    name: str = field(compare=False)
    aliases: tuple[str, ...] = field(default=(), compare=False)


def _key(text: str) -> str:
    # Case and spacing differ between people typing the same topic.
    return " ".join(text.casefold().split())


class Taxonomy:
    """Ordered topics with lookup by slug, display name or alias."""

    def __init__(self, topics: list[Topic]) -> None:
        self.topics = tuple(topics)
        self._index: dict[str, Topic] = {}
        for topic in topics:
            for label in (topic.slug, topic.name, *topic.aliases):
                self._index.setdefault(_key(label), topic)

    def __iter__(self) -> Iterator[Topic]:
        return iter(self.topics)

    def __len__(self) -> int:
        return len(self.topics)

    def get(self, label: str) -> Topic | None:
        """The topic a label names, ignoring case, or None."""
        return self._index.get(_key(label))

    def by_slug(self, slug: str) -> Topic:
        topic = self.get(slug)
        if topic is None or topic.slug != slug:
            raise KeyError(slug)
        return topic

    def suggest(self, label: str) -> str | None:
        """The display name closest to an unknown label, for did-you-mean."""
        key = _key(label)
        candidates = list(self._index)
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if not close:
            # "burnout therapist" is not close to anything as a whole, but a
            # word of it may start a topic's name.
            close = [c for c in candidates if key and (c.startswith(key) or key in c.split())][:1]
        return self._index[close[0]].name if close else None

    def unknown_message(self, label: str) -> str:
        hint = self.suggest(label)
        return f"unknown topic {label!r}" + (f"; did you mean {hint!r}?" if hint else " (see `newsletter topics`)")


def load_taxonomy(path: Path) -> Taxonomy:
    """Load ``topics.yaml``; raise ContentError with file:line problems."""
    text, problem = read_text(path) if path.exists() else (None, Problem(path, 1, "error", "topic list not found"))
    if problem is not None:
        raise ContentError(f"cannot load the topic list {path}", [problem])
    try:
        node = yaml.compose(text or "", Loader=yaml.SafeLoader)
        data = yaml.safe_load(text or "")
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ContentError(
            f"cannot load the topic list {path}",
            [Problem(path, line, "error", f"invalid YAML: {getattr(err, 'problem', err)}")],
        ) from None
    entries = data.get("topics") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ContentError(
            f"cannot load the topic list {path}", [Problem(path, 1, "error", "expected a 'topics:' list")]
        )
    assert node is not None  # a list was loaded from it
    item_nodes = next(v.value for k, v in node.value if k.value == "topics")
    problems: list[Problem] = []
    topics: list[Topic] = []
    seen: dict[str, int] = {}
    for entry, item in zip(entries, item_nodes, strict=False):
        line = item.start_mark.line + 1
        if not isinstance(entry, dict) or not entry.get("slug") or not entry.get("name"):
            problems.append(Problem(path, line, "error", "each topic needs a 'slug' and a 'name'"))
            continue
        slug, name = str(entry["slug"]), str(entry["name"])
        aliases = entry.get("aliases") or []
        if not _SLUG.match(slug):
            problems.append(Problem(path, line, "error", f"slug {slug!r} must be lowercase letters, digits and '-'"))
        for label in (slug, name, *map(str, aliases)):
            if _key(label) in seen and seen[_key(label)] != line:
                problems.append(
                    Problem(path, line, "error", f"{label!r} already names the topic on line {seen[_key(label)]}")
                )
            seen.setdefault(_key(label), line)
        topics.append(Topic(slug, name, tuple(map(str, aliases))))
    if problems:
        raise ContentError(f"cannot load the topic list {path}", problems)
    return Taxonomy(topics)
