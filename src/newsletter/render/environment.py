"""The one Jinja2 environment the templates are rendered with, and its filters.

Emails (``*.mjml.j2``, ``*.txt.j2``) and the web archive (``web/*.html.j2``)
share it, so a filter means the same in every template:

- autoescape by file name: on for ``.mjml.j2`` (MJML content *is* HTML, so
  "r < .30" must arrive as ``r &lt; .30``), ``.html.j2`` and ``.xml.j2``;
  off for ``.txt.j2`` (plain text: "&" stays "&");
- ``StrictUndefined``: a typo in a variable name fails the build instead of
  printing nothing;
- ``finalize``: author text printed by ``{{ }}`` can never forge a per-reader
  placeholder token (see ``variant.defuse``);
- ``LineMarks`` marks MJML output with template lines, so an MJML error
  points at ``templates/NAME:LINE`` (``sourcemap``).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from markupsafe import Markup, escape

from newsletter import defaults
from newsletter.content import markdown
from newsletter.errors import RenderError
from newsletter.render.sourcemap import LineMarks
from newsletter.render.variant import Placeholder, defuse


def finalize(value: Any) -> Any:
    """Applied to every ``{{ }}``: author text can never forge a placeholder token."""
    if isinstance(value, Placeholder):
        return value
    if isinstance(value, Markup):
        return Markup(defuse(str(value)))
    if isinstance(value, str):
        return defuse(value)
    return value


def _markdown(source: str, heading_level: int = 3) -> Markup:
    return Markup(markdown.to_html(source, heading_level))


def _markdown_inline(source: str) -> Markup:
    return Markup(markdown.inline_html(source))


def _lines_br(text: str) -> Markup:
    """Escape, and keep the author's line breaks (a postal address) as ``<br>``."""
    return Markup("<br>").join(escape(line.strip()) for line in text.strip().splitlines())


def _rule(width: int = markdown.WIDTH, char: str = "-") -> str:
    return char * width


def _underline(text: str, char: str = "=") -> str:
    longest = max((len(line) for line in text.split("\n")), default=0)
    return f"{text}\n{char * min(longest, markdown.WIDTH)}"


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


FILTERS: dict[str, Callable[..., Any]] = {
    # Markdown → HTML (escaping raw HTML), for the HTML templates
    "markdown": _markdown,
    "markdown_inline": _markdown_inline,
    # Markdown → text, for the text part, the preheader and metadata
    "plain": markdown.plain,
    "md_plain": markdown.plain,
    "md_text": markdown.to_text,
    "md_inline_text": markdown.inline_text,
    "wrap": markdown.wrap,
    "lines_br": _lines_br,
    "underline": _underline,
    "indent_lines": _indent,
}
GLOBALS: dict[str, Any] = {"rule": _rule, "width": markdown.WIDTH}


def make_environment(*folders: Path, globals_: Mapping[str, Any] | None = None) -> Environment:
    """The environment over ``folders`` (searched in order), with every filter."""
    env = Environment(
        loader=FileSystemLoader([str(f) for f in folders]),
        extensions=[LineMarks],
        autoescape=select_autoescape(["mjml.j2", "html.j2", "xml.j2"], default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=finalize,
        auto_reload=False,  # one run, one read of each template
    )
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS)
    env.globals.update(globals_ or {})
    return env


def template_folders(own: Path, default: Path) -> list[Path]:
    """Where templates are looked for: the author's folder first, then the packaged default.

    A template the author did not copy (or deleted) comes from the package,
    so an upgrade brings fixed templates to whoever never customised them.
    """
    own, default = own.resolve(), default.resolve()
    return [own, default] if own.is_dir() and own != default else [default]


def has_template(folders: list[Path], name: str) -> bool:
    return any((folder / name).is_file() for folder in folders)


def render_template(env: Environment, name: str, context: Mapping[str, Any], templates_dir: Path) -> str:
    """Render template ``name``; a failure is a RenderError naming ``templates/NAME:LINE``."""
    try:
        return env.get_template(name).render(context)
    except TemplateError as err:
        raise template_error(err, templates_dir) from err


def template_error(err: TemplateError, templates_dir: Path) -> RenderError:
    """A Jinja error as ``templates/NAME:LINE: message``.

    ``templates_dir`` is the author's folder; a template that came from the
    package says so (``templates/NAME:LINE (packaged default)``).
    """
    label = templates_dir.name
    if isinstance(err, TemplateNotFound):
        return RenderError(f"{label}/{err.name}: template not found in {templates_dir}")
    name, line, default = None, None, False
    if isinstance(err, TemplateSyntaxError):
        name, line = err.name, err.lineno
        default = err.filename is not None and not Path(err.filename).is_relative_to(templates_dir)
    else:
        # Runtime errors (UndefinedError...) carry no position; Jinja rewrites
        # the traceback so the template's frames point at template lines.
        for frame in reversed(traceback.extract_tb(err.__traceback__)):
            path = Path(frame.filename)
            if path.is_relative_to(templates_dir) and path.suffix == ".j2":
                name, line = path.relative_to(templates_dir).as_posix(), frame.lineno
                break
            if path.is_relative_to(defaults.TEMPLATES) and path.suffix == ".j2":
                name, line, default = path.relative_to(defaults.TEMPLATES).as_posix(), frame.lineno, True
                break
    where = f"{label}/{name}:{line}" if name else label
    if default:
        where += " (packaged default)"
    return RenderError(f"{where}: {type(err).__name__}: {err.message or err}")
