"""CSS inlining of the compiled MJML: only what must be inlined, nothing twice.

The HTML part's look lives in ``<mj-style inline="inline">`` blocks. As in
the official MJML, those rules are written onto the elements they match and
then dropped; every other ``<style>`` (MJML's client resets, its column media
queries, dark mode, our phone rules) stays in ``<head>`` as written and is
*not* inlined: copying ``table, td { mso-table-lspace: 0pt }`` onto every
cell only adds bytes, the clients that need it read it from ``<head>``.

premailer does the matching, with its defaults turned off where they break
MJML output: it would strip ``!important`` from the media queries (columns
stop stacking on phones), drop the lowercase ``<!doctype html>`` (quirks
mode), fetch over the network and rewrite links against ``base_url``. Its
"basic attributes" (``bgcolor`` from ``background-color``...) are kept for
table cells, where Outlook reads them, and nowhere else: ``bgcolor`` on a
``<span>`` is invalid HTML.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import cssutils
from premailer import Premailer

# cssutils logs every vendor property (mso-*, -webkit-*) it does not know as an
# ERROR; they are deliberate in email CSS.
cssutils.log.setLevel(logging.CRITICAL)
logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)

DOCTYPE = "<!DOCTYPE html>"
_LEADING_DOCTYPE = re.compile(r"^\s*<!doctype html>", re.IGNORECASE)
# <mj-style inline="inline">...</mj-style>, the rules to inline (MJML's own syntax).
INLINE_STYLE = re.compile(r"(<mj-style\s+inline\s*=\s*([\"'])inline\2\s*>)(.*?)(</mj-style\s*>)", re.DOTALL)
# What mjml-python makes of a blanked one.
_EMPTY_STYLE = re.compile(r"<style[^>]*>\s*</style>\n?")
# A <style> tag, or a comment (an Outlook conditional one may hold a <style>
# that premailer never sees, so it must not be marked either).
_STYLE_TAG = re.compile(r"(<!--.*?-->)|<style(?=[\s>])", re.IGNORECASE | re.DOTALL)
# Where HTML has these attributes (and Outlook for Windows still reads them).
_STYLE_ELEMENT = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_PUNCTUATION_SPACE = re.compile(r"\s*([{};,])\s*")
_IGNORE = 'data-premailer="ignore"'
_BASIC_ATTRIBUTE_TAGS = frozenset({"table", "tr", "td", "th", "body"})


def take_inline_styles(mjml: str) -> tuple[str, str]:
    """``(mjml, css)``: the CSS of every ``<mj-style inline="inline">``, and the MJML with them emptied.

    The CSS is blanked, not cut: spaces of the same length, newlines kept,
    so a byte position mjml-python reports still points at the same template
    line. (The element stays: mjml-python refuses bare whitespace in ``<mj-head>``.)
    """
    css: list[str] = []

    def blank(match: re.Match[str]) -> str:
        css.append(match.group(3))
        return match.group(1) + re.sub(r"[^\n]", " ", match.group(3)) + match.group(4)

    return INLINE_STYLE.sub(blank, mjml), "\n".join(css)


class _Inliner(Premailer):  # type: ignore[misc]  # premailer ships no types
    def _style_to_basic_html_attributes(self, element: Any, style_content: str, force: bool = False) -> None:
        if element.tag in _BASIC_ATTRIBUTE_TAGS:
            super()._style_to_basic_html_attributes(element, style_content, force)


def compact_css(css: str) -> str:
    """``css`` without comments, indentation and the spaces around ``{ } ; ,``: the same rules, fewer bytes.

    For the head's own CSS (ours and MJML's): no strings or ``url()`` in it
    whose spaces could matter. Some clients also report comments as unsupported.
    """
    # (Only the space *after* a colon goes: before one it can be a descendant combinator, ".a :hover".)
    return _CSS_PUNCTUATION_SPACE.sub(r"\1", " ".join(_CSS_COMMENT.sub("", css).split())).replace(": ", ":")


def inline_css(html: str, css: str) -> str:
    """``html`` with the rules of ``css`` written onto the elements they match.

    The document's own ``<style>`` elements are left as they are, in
    ``<head>``, ``!important`` and all. Rules of ``css`` that cannot be
    inlined (a media query, a pseudo-class) are added to ``<head>``.
    """
    # lxml keeps a doctype only if it reads the exact "<!DOCTYPE html>" it
    # would write itself; MJML's lowercase one is silently dropped otherwise.
    html = _LEADING_DOCTYPE.sub(DOCTYPE, html, count=1)
    html = _EMPTY_STYLE.sub("", html)
    html = _STYLE_ELEMENT.sub(lambda m: m.group(1) + compact_css(m.group(2)) + m.group(3), html)
    html = _STYLE_TAG.sub(lambda m: m.group(1) or f"<style {_IGNORE}", html)
    premailer = _Inliner(
        html,
        css_text=[css] if css.strip() else None,
        allow_network=False,  # an email build never fetches anything
        strip_important=False,  # MJML's mobile media queries need their !important
        disable_link_rewrites=True,  # placeholder hrefs must stay byte for byte
        # The head's own styles are marked "ignore" above: kept as written,
        # never inlined. Of css_text, only what cannot be inlined goes to <head>.
        keep_style_tags=False,
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=True,
        # Our CSS is our own, checked by the render tests; validating it with
        # cssutils costs half a second of regex compiling per process.
        disable_validation=True,
    )
    # premailer removes the mark from the styles it skips, except one with a
    # media attribute (it skips those before looking).
    out = str(premailer.transform(pretty_print=False)).replace(f"<style {_IGNORE}", "<style")
    if not out.startswith(DOCTYPE):
        out = DOCTYPE + "\n" + _LEADING_DOCTYPE.sub("", out, count=1)
    return out
