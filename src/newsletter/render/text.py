"""The plain-text part, rendered from the same sources as the HTML.

It is not scraped from the HTML: a text part made by stripping tags reads
like one (link targets lost, tables flattened). ``email.txt.j2`` lays the
issue out; the filters here turn Markdown into wrapped text
(``markdown.to_text``) and wrap plain strings. Blank-line runs left by
template logic are squeezed afterwards, so the template can stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError

from newsletter.render import markdown
from newsletter.render.mjml import finalize, template_error

_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


def _rule(width: int = markdown.WIDTH, char: str = "-") -> str:
    return char * width


def _underline(text: str, char: str = "=") -> str:
    longest = max((len(line) for line in text.split("\n")), default=0)
    return f"{text}\n{char * min(longest, markdown.WIDTH)}"


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


FILTERS: dict[str, Callable[..., Any]] = {
    "md_text": markdown.to_text,
    "md_inline_text": markdown.inline_text,
    "wrap": markdown.wrap,
    "underline": _underline,
    "indent_lines": _indent,
}


class TextRenderer:
    """Renders ``email.txt.j2`` to the finished plain-text part."""

    def __init__(self, templates_dir: Path, globals_: Mapping[str, Any] | None = None) -> None:
        self.templates_dir = templates_dir
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            autoescape=False,  # plain text: "&" stays "&"
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            finalize=finalize,
        )
        self.env.filters.update(FILTERS)
        self.env.globals.update({"rule": _rule, "width": markdown.WIDTH, **(globals_ or {})})

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """The text part: template output with trailing spaces and extra blank lines removed."""
        try:
            text = self.env.get_template(template).render(context)
        except TemplateError as err:
            raise template_error(err, self.templates_dir) from err
        text = _TRAILING_SPACE.sub("", text)
        return _BLANK_RUNS.sub("\n\n", text).strip("\n") + "\n"
