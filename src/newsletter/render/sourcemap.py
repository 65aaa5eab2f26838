"""Map a position in generated MJML back to the template line that wrote it.

mjml-python reports a failure as a byte span in the MJML it was given, or
with no position at all; neither means anything to whoever edits the
templates. So the MJML environment marks its output: a Jinja extension puts
``<!--nl:NAME:LINE-->`` at the start of every line of template *data* (never
inside a ``{% %}`` or ``{{ }}`` tag, so no template can break), and the marks
are stripped, with their positions kept, before the MJML is compiled. Text an
expression prints belongs to the line of the mark before it: the line of the
expression. Author text cannot forge a mark: autoescape turns its ``<`` into
``&lt;``. (A ``{% set x %}...{% endset %}`` block captures marks with its
text; they are stripped with the rest, but do not compare such a value.)
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream

_MARK = re.compile(r"<!--nl:([^:>]+):(\d+)-->")


class LineMarks(Extension):
    """Marks every line of template data with its template name and line."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        name = stream.name or "?"
        if not name.endswith(".mjml.j2"):  # only MJML needs mapping back (and text must stay clean)
            yield from stream
            return
        for token in stream:
            if token.type != "data":
                yield token
                continue
            lines = token.value.split("\n")
            marked = [f"<!--nl:{name}:{token.lineno}-->{lines[0]}"]
            marked += [
                f"<!--nl:{name}:{token.lineno + i}-->{line}" if line else line for i, line in enumerate(lines[1:], 1)
            ]
            yield Token(token.lineno, "data", "\n".join(marked))


@dataclass
class SourceMap:
    """Generated MJML (marks removed) and where each template line's text starts in it."""

    source: str
    offsets: list[int]
    lines: list[tuple[str, int]]

    @classmethod
    def strip(cls, marked: str) -> SourceMap:
        out: list[str] = []
        offsets: list[int] = []
        lines: list[tuple[str, int]] = []
        size = last = 0
        for match in _MARK.finditer(marked):
            out.append(marked[last : match.start()])
            size += match.start() - last
            last = match.end()
            offsets.append(size)
            lines.append((match.group(1), int(match.group(2))))
        out.append(marked[last:])
        return cls("".join(out), offsets, lines)

    def locate(self, offset: int) -> tuple[str, int] | None:
        """``(template, line)`` that wrote the character at ``offset``."""
        i = bisect.bisect_right(self.offsets, offset) - 1
        return self.lines[i] if i >= 0 else None

    def locate_bytes(self, byte_offset: int) -> tuple[str, int] | None:
        """Like ``locate`` for an offset in the UTF-8 bytes (what mrml reports)."""
        chars = len(self.source.encode("utf-8")[:byte_offset].decode("utf-8", "ignore"))
        return self.locate(chars)


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}


class _Balance(HTMLParser):
    """Finds the first tag closed out of order, or left open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, tuple[int, int]]] = []
        self.problem: tuple[str, tuple[int, int]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.open.append((tag, self.getpos()))

    def handle_endtag(self, tag: str) -> None:
        if self.problem is not None or tag in _VOID:
            return
        if self.open and self.open[-1][0] == tag:
            self.open.pop()
        elif self.open:
            # The mistake is usually the tag left open, not the one that ends its parent.
            name, pos = self.open[-1]
            self.problem = (f"<{name}> is not closed before </{tag}>", pos)
        else:
            self.problem = (f"</{tag}> closes nothing", self.getpos())


def find_imbalance(source: str) -> tuple[str, int] | None:
    """``(what, offset)`` of the first unbalanced tag in ``source``, if any.

    For when mrml fails without a position ("unexpected end of stream" is a
    tag left open); the lenient stdlib parser has a position for every tag.
    """
    parser = _Balance()
    parser.feed(source)
    parser.close()
    if parser.problem is None and parser.open:
        name, pos = parser.open[-1]
        parser.problem = (f"<{name}> is never closed", pos)
    if parser.problem is None:
        return None
    what, (line, column) = parser.problem
    starts = [0] + [m.end() for m in re.finditer("\n", source)]
    return what, starts[line - 1] + column
