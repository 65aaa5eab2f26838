"""The plain-text part, rendered from the same sources as the HTML.

It is not scraped from the HTML: a text part made by stripping tags reads
like one (link targets lost, tables flattened). ``email.txt.j2`` lays the
issue out; the shared filters (``environment.py``) turn Markdown into wrapped text
(``markdown.to_text``) and wrap plain strings. Blank-line runs left by
template logic are squeezed afterwards, so the template can stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment

from newsletter.render.environment import render_template

_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


class TextRenderer:
    """Renders ``email.txt.j2`` to the finished plain-text part."""

    def __init__(self, env: Environment, templates_dir: Path) -> None:
        self.env = env
        self.templates_dir = templates_dir

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """The text part: template output with trailing spaces and extra blank lines removed."""
        text = render_template(self.env, template, context, self.templates_dir)
        text = _TRAILING_SPACE.sub("", text)
        return _BLANK_RUNS.sub("\n\n", text).strip("\n") + "\n"
