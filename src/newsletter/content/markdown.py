"""Author Markdown → email HTML, and → plain text, from one parse.

Bodies, implications and the editor's note are CommonMark with raw HTML
*disabled*: ``<script>`` typed into a summary shows as text, it never reaches
a reader's mail client. The HTML side returns bare semantic tags (``p``,
``ul``, ``a``...); the stylesheet in the templates is inlined onto them by
premailer, so the look lives in one place. The text side walks the same
token tree and writes what a plain-text reader expects: ``- `` lists,
``*emphasis*``, and links written out as ``text (https://...)``.
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

# Links a reader can follow from an inbox. A relative link has nothing to be
# relative to in an email, so it is written as its text alone (`check` warns).
ABSOLUTE_LINK = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)
WIDTH = 72

_md = MarkdownIt("commonmark", {"html": False})


def is_absolute(url: str) -> bool:
    """Whether ``url`` works from an inbox (http(s) or mailto)."""
    return bool(ABSOLUTE_LINK.match(url))


def relative_links(source: str) -> list[str]:
    """Link targets in ``source`` that are not absolute (they render as plain text)."""
    found = []
    for token in _md.parse(source):
        for child in token.children or ():
            if child.type in ("link_open", "image"):
                url = str(child.attrs.get("href" if child.type == "link_open" else "src", ""))
                if not is_absolute(url):
                    found.append(url)
    return found


# --- HTML -----------------------------------------------------------------


def _email_safe_inline(children: list[Token]) -> list[Token]:
    """Drop links that go nowhere from an inbox; turn images into links to them.

    Images are left out on purpose: the digest is text, and an image from an
    unknown host is blocked by most clients anyway. The alt text survives.
    """
    out: list[Token] = []
    dropped_depth = 0
    for token in children:
        if token.type == "link_open" and not is_absolute(str(token.attrs.get("href", ""))):
            dropped_depth += 1
            continue
        if token.type == "link_close" and dropped_depth:
            dropped_depth -= 1
            continue
        if token.type == "image":
            alt = Token("text", "", 0, content=token.content or "image")
            src = str(token.attrs.get("src", ""))
            if is_absolute(src):
                out += [Token("link_open", "a", 1, attrs={"href": src}), alt, Token("link_close", "a", -1)]
            else:
                out.append(alt)
            continue
        out.append(token)
    return out


def _shift_headings(tokens: list[Token], top: int) -> None:
    """Renumber headings so the shallowest one is ``<h{top}>``.

    An author's ``##`` inside a summary must not outrank the summary's own
    ``<h2>`` title: document outline order matters to screen readers.
    """
    levels = [int(t.tag[1]) for t in tokens if t.type == "heading_open"]
    if not levels:
        return
    shift = top - min(levels)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + shift)}"


@lru_cache(maxsize=512)
def to_html(source: str, heading_level: int = 3) -> str:
    """Render block Markdown as email-ready HTML (headings start at ``heading_level``)."""
    tokens = _md.parse(source)
    _shift_headings(tokens, heading_level)
    for token in tokens:
        if token.type == "inline" and token.children:
            token.children = _email_safe_inline(token.children)
    return str(_md.renderer.render(tokens, _md.options, {}))


@lru_cache(maxsize=512)
def inline_html(source: str) -> str:
    """Render one line of inline Markdown (emphasis, links) as HTML without a ``<p>``."""
    tokens = _md.parseInline(source)
    for token in tokens:
        if token.children:
            token.children = _email_safe_inline(token.children)
    return str(_md.renderer.render(tokens, _md.options, {}))


# --- plain text -------------------------------------------------------------


def _wrap(text: str, width: int) -> list[str]:
    # Never split a URL or a hyphenated word: a broken link is worse than a long line.
    lines: list[str] = []
    for piece in text.split("\n"):
        lines += textwrap.wrap(piece, width=max(width, 20), break_long_words=False, break_on_hyphens=False) or [""]
    return lines


def _inline_text(node: SyntaxTreeNode, marks: bool = True) -> str:
    """Inline text; ``marks`` keeps emphasis as ``*x*`` (off for a preheader)."""
    parts: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "em":
            parts.append(f"*{_inline_text(child, marks)}*" if marks else _inline_text(child, marks))
        elif kind == "strong":
            parts.append(f"**{_inline_text(child, marks)}**" if marks else _inline_text(child, marks))
        elif kind == "link":
            parts.append(_link_text(_inline_text(child, marks), str(child.attrs.get("href", ""))))
        elif kind == "image":
            parts.append(_link_text(child.content or "image", str(child.attrs.get("src", ""))))
        else:
            parts.append(_inline_text(child, marks))
    return "".join(parts)


def _link_text(label: str, url: str) -> str:
    if not is_absolute(url):
        return label
    shown = url[len("mailto:") :] if url.lower().startswith("mailto:") else url
    return label if label == shown else f"{label} ({shown})"


def _prefixed(lines: list[str], first: str, rest: str) -> list[str]:
    return [(first if i == 0 else rest) + line if line else "" for i, line in enumerate(lines)]


def _blocks(node: SyntaxTreeNode, width: int) -> list[list[str]]:
    """Each block child of ``node`` as its lines, ready to join with blank lines."""
    blocks: list[list[str]] = []
    for child in node.children:
        kind = child.type
        if kind == "paragraph":
            blocks.append(_wrap(_inline_text(child.children[0]), width))
        elif kind == "heading":
            title = _inline_text(child.children[0])
            blocks.append([*_wrap(title, width), "-" * min(len(title), width)])
        elif kind in ("bullet_list", "ordered_list"):
            blocks.append(_list_lines(child, width))
        elif kind == "blockquote":
            inner = _join(_blocks(child, width - 2))
            blocks.append(["> " + line if line else ">" for line in inner])
        elif kind in ("code_block", "fence"):
            blocks.append(["    " + line for line in child.content.rstrip("\n").split("\n")])
        elif kind == "hr":
            blocks.append(["-" * 24])
        elif child.children:
            blocks += _blocks(child, width)
    return blocks


def _list_lines(node: SyntaxTreeNode, width: int) -> list[str]:
    ordered = node.type == "ordered_list"
    number = int(node.attrs.get("start", 1) or 1)
    lines: list[str] = []
    tight = all(
        p.nester_tokens is not None and p.nester_tokens.opening.hidden
        for item in node.children
        for p in item.children
        if p.type == "paragraph"
    )
    for item in node.children:
        marker = f"{number}. " if ordered else "- "
        number += 1
        inner = _join(_blocks(item, width - len(marker)), tight)
        if lines and not tight:
            lines.append("")
        lines += _prefixed(inner or [""], marker, " " * len(marker))
    return lines


def _join(blocks: list[list[str]], tight: bool = False) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if lines and not tight:
            lines.append("")
        lines += block
    return lines


@lru_cache(maxsize=512)
def to_text(source: str, width: int = WIDTH) -> str:
    """Render block Markdown as plain text wrapped at ``width`` columns."""
    tree = SyntaxTreeNode(_md.parse(source))
    return "\n".join(_join(_blocks(tree, width))).rstrip()


@lru_cache(maxsize=512)
def inline_text(source: str, marks: bool = True) -> str:
    """Render one line of inline Markdown as plain text (no wrapping).

    ``marks=False`` drops emphasis markers, for text shown as is (a preheader).
    """
    tree = SyntaxTreeNode(_md.parseInline(source))
    return " ".join(_inline_text(tree.children[0], marks).split()) if tree.children else ""


def plain(source: str) -> str:
    """Inline Markdown as bare text: no emphasis markers."""
    return inline_text(source, marks=False)


def wrap(text: str, width: int = WIDTH, indent: str = "") -> str:
    """Wrap plain ``text`` at ``width`` columns, every line after the first indented."""
    lines = _wrap(text, width - len(indent))
    return "\n".join(_prefixed(lines, "", indent))
