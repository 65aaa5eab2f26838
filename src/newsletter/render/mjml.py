"""Jinja2 → MJML → HTML → inlined CSS: the HTML part, and its failures explained.

Three libraries, each with a trap this module handles where it is called:

- **Jinja2** renders ``*.mjml.j2`` in the shared environment
  (``environment.py``: autoescape, ``StrictUndefined``, line marks).
- **mjml-python** (the Rust ``mrml``) raises a bare ``ValueError`` whose
  position, when it has one, is a byte span ``start:end`` in the MJML it was
  given, not a line: ``sourcemap`` maps it back to a template and line. It is
  lenient too: an unknown ``<mj-txt>`` is copied into the HTML, so we check.
  ``fonts={}``: a Google Fonts ``<link>`` would be fetched by premailer over a
  network we do not have, and web fonts are off-brief anyway.
- **mjml-python** also drops a whitespace-only text node that starts with a
  newline, so ``<em>a</em>`` + newline + ``<a>b</a>`` (hard-wrapped Markdown,
  one topic pill per template line) comes out as "ab": ``keep_word_spaces``
  turns every such run inside content elements into one space first.
- **premailer** (``inline.py``) writes the ``inline="inline"`` rules onto
  the elements; everything else stays in ``<head>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment
from mjml import mjml2html

from newsletter.errors import RenderError
from newsletter.render.environment import render_template
from newsletter.render.inline import inline_css, take_inline_styles
from newsletter.render.sourcemap import SourceMap, find_imbalance

# MJML's "ending tags": their content is HTML, passed through as written.
# (A tag may hold line marks: they follow every {{ }} in a template line.)
_CONTENT = re.compile(
    r"(<(mj-text|mj-button|mj-table)(?=[\s>])(?:<!--nl:[^>]*-->|[^<>])*(?<!/)>)(.*?)(</\2\s*>)", re.DOTALL
)
# Between two tags, whitespace with a newline in it, and any line marks (sourcemap) in it.
_GAP_PART = r"(?:\s|<!--nl:[^>]*-->)"
_NEWLINE_GAP = re.compile(rf"(?<=>){_GAP_PART}*\n{_GAP_PART}*(?=<(?!!--nl:))")
_LINE_MARK = re.compile(r"<!--nl:[^>]*-->")
_SPAN = re.compile(r"at position (\d+):(\d+)")
_UNKNOWN_ELEMENT = re.compile(r"<(mj-[a-z-]+)(?=[\s/>])")


class MjmlRenderer:
    """Renders a layout template to the final, inlined HTML of an email."""

    def __init__(self, env: Environment, templates_dir: Path) -> None:
        self.env = env
        self.templates_dir = templates_dir

    def mjml(self, template: str, context: Mapping[str, Any]) -> SourceMap:
        """The MJML the template produces, with where each template line's text is."""
        return SourceMap.strip(keep_word_spaces(render_template(self.env, template, context, self.templates_dir)))

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """Template → MJML → HTML with CSS inlined, starting with ``<!DOCTYPE html>``."""
        mjml = self.mjml(template, context)
        source, css = take_inline_styles(mjml.source)
        try:
            compiled = mjml2html(source, disable_comments=True, fonts={})
        except ValueError as err:
            raise self._mjml_error(str(err), mjml, template) from err
        # mrml copies an element it does not know (a typo: <mj-txt>) into the
        # HTML as is, where clients ignore it and its content. Say so instead.
        unknown = _UNKNOWN_ELEMENT.search(compiled)
        if unknown:
            name = unknown.group(1)
            found = re.search(f"<{re.escape(name)}(?=[\\s/>])", mjml.source)
            where = mjml.locate(found.start()) if found else None
            raise RenderError(f"{self._where(where, template)}: MJML: unknown element <{name}>")
        return inline_css(compiled, css)

    def _where(self, where: tuple[str, int] | None, layout: str) -> str:
        folder = self.templates_dir.name
        return f"{folder}/{where[0]}:{where[1]}" if where else f"{folder}/{layout}"

    def _mjml_error(self, message: str, mjml: SourceMap, layout: str) -> RenderError:
        what = message.replace(" in root template", "")
        span = _SPAN.search(what)
        if span:
            start, end = int(span.group(1)), int(span.group(2))
            snippet = mjml.source.encode("utf-8")[start:end].decode("utf-8", "replace").strip()
            what = _SPAN.sub("", what).strip() + (f" near {snippet!r}" if snippet else "")
            return RenderError(f"{self._where(mjml.locate_bytes(start), layout)}: MJML: {what}")
        # No position (e.g. "unexpected end of stream"): usually a tag left
        # open or closed out of order, which a tag-balance pass can locate.
        imbalance = find_imbalance(mjml.source)
        if imbalance is not None:
            detail, offset = imbalance
            return RenderError(f"{self._where(mjml.locate(offset), layout)}: MJML: {what}: {detail}")
        return RenderError(f"{self._where(None, layout)}: MJML: {what}")


def keep_word_spaces(mjml: str) -> str:
    """``mjml`` with each newline-holding whitespace run between tags in content made one space.

    mjml-python drops such a run, and with it the space a reader sees
    between two inline elements. Line marks in a run are kept (after the
    space), so positions still map to template lines. Between blocks the
    space is harmless; inside ``<pre>`` there are no tags, so none is touched.
    """

    def content(match: re.Match[str]) -> str:
        inner = _NEWLINE_GAP.sub(lambda gap: " " + "".join(_LINE_MARK.findall(gap.group(0))), match.group(3))
        return match.group(1) + inner + match.group(4)

    return _CONTENT.sub(content, mjml)
