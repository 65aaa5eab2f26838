"""Reading source files (Markdown with YAML front matter) with line numbers.

python-frontmatter parses the same format but forgets where things were; the
checker must say ``file:line`` for every problem, so we split the file
ourselves and ask PyYAML's composer for the line of each key.
"""

from __future__ import annotations

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
        return None, [Problem(path, line, "error", f"invalid YAML in front matter: {reason}")]
    except RecursionError:
        return None, [Problem(path, 2, "error", "invalid YAML in front matter: nested too deeply")]
    if data is None:
        return source, []
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        return None, [Problem(path, 2, "error", "front matter must be a mapping of 'key: value' lines")]
    for key_node, value_node in node.value:
        key = str(key_node.value)
        source.key_lines[key] = key_node.start_mark.line + 2
        if isinstance(value_node, yaml.SequenceNode):
            source.item_lines[key] = [item.start_mark.line + 2 for item in value_node.value]
    source.data = {str(k): v for k, v in data.items()}
    return source, []


# libyaml's parser, where PyYAML was built with it: the same documents, a
# tenth of the time (the archive reads every issue's every file).
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str, loader_class: type) -> tuple[yaml.Node | None, object]:
    """The node tree (for line numbers) and the data, from one parse."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
