"""Reading source files (Markdown with YAML front matter) with line numbers.

python-frontmatter parses the same format but forgets where things were; the
checker must say ``file:line`` for every problem, so we split the file
ourselves and ask PyYAML's composer for the line of each key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsletter.errors import Problem

FENCE = "---"


@dataclass
class Source:
    """A parsed source file: front matter values, their lines, and the body."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    key_lines: dict[str, int] = field(default_factory=dict)
    item_lines: dict[str, list[int]] = field(default_factory=dict)
    body: str = ""
    body_line: int = 1

    def line_of(self, key: str) -> int:
        """Line of ``key`` in the front matter, or of the opening fence."""
        return self.key_lines.get(key, 1)


def read_text(path: Path) -> tuple[str | None, Problem | None]:
    """Return the file's text, or a problem saying why it cannot be read."""

    def fail(message: str, line: int = 1) -> tuple[None, Problem]:
        return None, Problem(path, line, "error", message)

    if path.is_dir():
        return fail("is a directory, expected a file")
    if not path.is_file():  # a FIFO or a device would block the read forever
        return fail("is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        return fail(f"cannot read file: {err.strerror or err}")
    if b"\x00" in raw:
        return fail("is a binary file, expected UTF-8 text", raw.count(b"\n", 0, raw.index(b"\x00")) + 1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return fail(f"is not valid UTF-8 (byte 0x{raw[err.start]:02x}); save it as UTF-8", line)
    return text.replace("\r\n", "\n").replace("\r", "\n"), None


def parse_source(path: Path) -> tuple[Source | None, list[Problem]]:
    """Split ``path`` into front matter and body; report what is wrong."""
    text, problem = read_text(path)
    if problem is not None:
        return None, [problem]
    assert text is not None
    if not text.strip():
        return None, [Problem(path, 1, "error", "file is empty")]
    lines = text.split("\n")
    if lines[0].rstrip() != FENCE:
        return None, [Problem(path, 1, "error", "missing front matter: the file must start with a line '---'")]
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].rstrip() == FENCE)
    except StopIteration:
        return None, [Problem(path, 1, "error", "front matter is not closed: add a line '---' after it")]
    text, cleaned = _without_controls(path, text)
    lines = text.split("\n")
    yaml_text = "\n".join(lines[1:end])
    source = Source(path=path, body="\n".join(lines[end + 1 :]), body_line=end + 2)
    try:
        try:
            node, data = _parse_yaml(yaml_text, FAST_LOADER)
        except yaml.YAMLError:
            # libyaml words its errors its own way: PyYAML's parser gives the ones we document.
            node, data = _parse_yaml(yaml_text, yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 2 if mark is not None else 1
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        return None, [*cleaned, Problem(path, line, "error", f"invalid YAML in front matter: {reason}")]
    except RecursionError:
        return None, [*cleaned, Problem(path, 2, "error", "invalid YAML in front matter: nested too deeply")]
    except _BadValue as err:
        return None, [*cleaned, Problem(path, err.line, "error", f"invalid value in front matter: {err.reason}")]
    if data is None:
        return source, cleaned
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        return None, [Problem(path, 2, "error", "front matter must be a mapping of 'key: value' lines")]
    for key_node, value_node in node.value:
        key = str(key_node.value)
        source.key_lines[key] = key_node.start_mark.line + 2
        if isinstance(value_node, yaml.SequenceNode):
            source.item_lines[key] = [item.start_mark.line + 2 for item in value_node.value]
    source.data = {str(k): v for k, v in data.items()}
    return source, cleaned


# libyaml's parser, where PyYAML was built with it: the same documents, a
# tenth of the time (the archive reads every issue's every file).
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _BadValue(Exception):
    """A front matter value YAML parses but cannot be: an alias, a date that does not exist."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def _parse_yaml(text: str, loader_class: type) -> tuple[yaml.Node | None, object]:
    """The node tree (for line numbers) and the data, from one parse."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _refuse_aliases(node)
        try:
            return node, loader.construct_document(node)
        except (ValueError, TypeError, OverflowError):
            # PyYAML builds dates and times itself and lets their errors out
            # (send_at: 2021-02-30): find the value that fails, for its line.
            raise _bad_value(node, loader_class) from None
    finally:
        loader.dispose()


def _bad_value(node: yaml.Node, loader_class: type) -> _BadValue:
    for key_node, value_node in node.value if isinstance(node, yaml.MappingNode) else []:
        loader = loader_class("")  # a fresh constructor: the failed one keeps half-built state
        try:
            loader.construct_object(value_node, deep=True)
        except (ValueError, TypeError, OverflowError) as err:
            return _BadValue(
                value_node.start_mark.line + 2, f"{key_node.value}: {value_node.value!r} is not valid ({err})"
            )
        finally:
            loader.dispose()
    return _BadValue(2, "a value cannot be read")


def _refuse_aliases(node: yaml.Node) -> None:
    """Raise _BadValue if the tree uses a YAML alias (``*name``).

    Front matter never needs one, and nine levels of nine-way aliases make a
    billion-item list from a few hundred bytes: the composer shares the
    aliased node, so a node met twice in a walk is an alias.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(node, node.start_mark.line + 2)]
    while stack:
        current, line = stack.pop()
        if not isinstance(current, (yaml.MappingNode, yaml.SequenceNode)):
            continue
        if id(current) in seen:
            raise _BadValue(line, "YAML aliases (*name) are not allowed")
        seen.add(id(current))
        # In document order, so the anchor is met before its aliases; an alias
        # shares the anchor's marks, so it is placed by its parent's line.
        if isinstance(current, yaml.MappingNode):
            stack.extend((value, key.start_mark.line + 2) for key, value in reversed(current.value))
        else:
            stack.extend((item, line) for item in reversed(current.value))


# Characters PDF copy-and-paste brings along (form feeds, other C0 controls,
# U+FFFE/U+FFFF): nothing an email, a web page or an XML feed may contain.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def _without_controls(path: Path, text: str) -> tuple[str, list[Problem]]:
    """``text`` with control characters made spaces, and a warning for each line that had any."""
    if not _CONTROLS.search(text):
        return text, []
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        found = sorted({f"U+{ord(c):04X}" for c in _CONTROLS.findall(line)})
        if found:
            problems.append(
                Problem(path, number, "warning", f"control character(s) {', '.join(found)} replaced by spaces")
            )
    return _CONTROLS.sub(" ", text), problems
