"""A rendered variant of an issue, and the per-reader placeholders in it.

One render serves every reader of the same selection of summaries: what
differs per reader (the greeting name and their two personal links) is left
in the rendered HTML and text as *placeholder tokens*, filled in per message.

Tokens are letters, digits and underscores only. Anything fancier does not
survive the pipeline: premailer percent-encodes ``%`` and spaces in ``href``
and HTML-escapes ``<%...%>``, and MJML's parser chokes on ``{{ }}`` in
attributes. ``__nl_x__`` passes every stage untouched.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

NAME = "__nl_name__"
UNSUBSCRIBE_URL = "__nl_unsubscribe_url__"
PREFERENCES_URL = "__nl_preferences_url__"
# fill()'s parameter names → tokens; also the keys with_tags() expects.
TOKENS: dict[str, str] = {"name": NAME, "unsubscribe_url": UNSUBSCRIBE_URL, "preferences_url": PREFERENCES_URL}
TOKEN_PATTERN = re.compile("|".join(re.escape(t) for t in TOKENS.values()))
# Author text must never smuggle in a token (it would be filled with a
# reader's personal link): a zero-width non-joiner between the underscores
# reads the same and matches nothing.
_TOKEN_START = "__nl_"
_DEFUSED_START = "_\u200c_nl_"
DEFAULT_NAME = "reader"


class Placeholder(str):
    """A token the templates may print as is (author text is defused, tokens are not)."""

    __slots__ = ()


def defuse(text: str) -> str:
    """``text`` with anything that looks like a placeholder token made inert."""
    return text.replace(_TOKEN_START, _DEFUSED_START) if _TOKEN_START in text else text


def _split(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Literal pieces and the tokens between them: ``lit0 tok0 lit1 tok1 ... litN``."""
    pieces = TOKEN_PATTERN.split(template)
    return tuple(pieces), tuple(TOKEN_PATTERN.findall(template))


def _join(pieces: tuple[str, ...], tokens: tuple[str, ...], values: Mapping[str, str]) -> str:
    out = [pieces[0]]
    for token, piece in zip(tokens, pieces[1:], strict=False):
        out.append(values[token])
        out.append(piece)
    return "".join(out)


@dataclass(frozen=True)
class Variant:
    """One issue rendered for one selection of its summaries.

    ``key`` names the variant: ``all`` for the full issue, else the issue
    positions of its summaries, two digits each, joined by ``+`` (``01+03``).
    ``html`` and ``text`` still hold the placeholder tokens; ``fill`` or
    ``with_tags`` turn them into a reader's message.
    """

    issue_id: str
    key: str
    slugs: tuple[str, ...]
    subject: str
    html: str = field(repr=False)
    text: str = field(repr=False)
    # Split once here, so filling is a join per reader (microseconds), never a search.
    _html_parts: tuple[tuple[str, ...], tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _text_parts: tuple[tuple[str, ...], tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_html_parts", _split(self.html))
        object.__setattr__(self, "_text_parts", _split(self.text))

    @property
    def is_full(self) -> bool:
        return self.key == "all"

    def fill(self, name: str, unsubscribe_url: str, preferences_url: str) -> tuple[str, str]:
        """This variant for one reader: ``(html, text)`` with their name and links.

        Values are HTML-escaped in the HTML part (a name like ``Bob <b>`` shows
        as typed) and left as they are in the text part. An empty name greets
        the "reader".
        """
        name = name.strip() or DEFAULT_NAME
        raw = {NAME: name, UNSUBSCRIBE_URL: unsubscribe_url, PREFERENCES_URL: preferences_url}
        escaped = {token: html.escape(value, quote=True) for token, value in raw.items()}
        return _join(*self._html_parts, escaped), _join(*self._text_parts, raw)

    def with_tags(self, mapping: Mapping[str, str], text_mapping: Mapping[str, str] | None = None) -> tuple[str, str]:
        """``(html, text)`` with each token swapped for a provider's own tag, unescaped.

        ``mapping`` has one entry per ``fill`` parameter (``name``,
        ``unsubscribe_url``, ``preferences_url``), e.g. SendGrid's
        ``{"unsubscribe_url": "<%asm_group_unsubscribe_raw_url%>", ...}``;
        ``text_mapping``, if given, is used for the text part instead (a
        provider substitutes one value per tag in both parts, so a value
        escaped for HTML needs a tag of its own). A missing or unknown key is
        an error: a token left in a sent email is a broken link.
        """
        html_values = self._tag_values(mapping)
        text_values = self._tag_values(text_mapping) if text_mapping is not None else html_values
        return _join(*self._html_parts, html_values), _join(*self._text_parts, text_values)

    @staticmethod
    def _tag_values(mapping: Mapping[str, str]) -> dict[str, str]:
        missing = sorted(set(TOKENS) - set(mapping))
        unknown = sorted(set(mapping) - set(TOKENS))
        if missing or unknown:
            raise ValueError(f"with_tags needs exactly {sorted(TOKENS)}; missing {missing}, unknown {unknown}")
        return {TOKENS[key]: tag for key, tag in mapping.items()}
