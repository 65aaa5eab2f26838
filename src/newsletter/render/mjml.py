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
- **premailer** defaults break MJML output: it strips ``!important`` from the
  responsive media queries (columns stop stacking on phones), drops the
  lowercase ``<!doctype html>`` MJML writes (quirks mode), fetches over the
  network, and rewrites links against ``base_url``. All turned off below.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cssutils
from jinja2 import Environment
from mjml import mjml2html
from premailer import Premailer

from newsletter.errors import RenderError
from newsletter.render.environment import render_template
from newsletter.render.sourcemap import SourceMap, find_imbalance

# cssutils logs every vendor property (mso-*, -webkit-*) it does not know as an
# ERROR; they are deliberate in email CSS.
cssutils.log.setLevel(logging.CRITICAL)
logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)

DOCTYPE = "<!DOCTYPE html>"
_LEADING_DOCTYPE = re.compile(r"^\s*<!doctype html>", re.IGNORECASE)
_SPAN = re.compile(r"at position (\d+):(\d+)")
_UNKNOWN_ELEMENT = re.compile(r"<(mj-[a-z-]+)(?=[\s/>])")


class MjmlRenderer:
    """Renders a layout template to the final, inlined HTML of an email."""

    def __init__(self, env: Environment, templates_dir: Path) -> None:
        self.env = env
        self.templates_dir = templates_dir

    def mjml(self, template: str, context: Mapping[str, Any]) -> SourceMap:
        """The MJML the template produces, with where each template line's text is."""
        return SourceMap.strip(render_template(self.env, template, context, self.templates_dir))

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """Template → MJML → HTML with CSS inlined, starting with ``<!DOCTYPE html>``."""
        mjml = self.mjml(template, context)
        try:
            compiled = mjml2html(mjml.source, disable_comments=True, fonts={})
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
        return inline_css(compiled)

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


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules MJML collected, without premailer's defaults.

    Rules that cannot be inlined (media queries, ``:root``) stay in ``<head>``
    as written, ``!important`` and all.
    """
    # lxml keeps a doctype only if it reads the exact "<!DOCTYPE html>" it
    # would write itself; MJML's lowercase one is silently dropped otherwise.
    html = _LEADING_DOCTYPE.sub(DOCTYPE, html, count=1)
    premailer = Premailer(
        html,
        allow_network=False,  # an email build never fetches anything
        strip_important=False,  # MJML's mobile media queries need their !important
        disable_link_rewrites=True,  # placeholder hrefs must stay byte for byte
        keep_style_tags=True,  # media queries and dark mode stay in <head>
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=True,
        # Our CSS is our own, checked by the render tests; validating it with
        # cssutils costs half a second of regex compiling per process.
        disable_validation=True,
    )
    out = str(premailer.transform())
    if not out.startswith(DOCTYPE):
        out = DOCTYPE + "\n" + _LEADING_DOCTYPE.sub("", out, count=1)
    return out
