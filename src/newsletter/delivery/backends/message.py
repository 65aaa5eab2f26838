"""One RFC 5322 message for one reader: headers, text part first, HTML part.

The stdlib ``email`` package takes ~9 ms to build and serialise one 40 KB
newsletter (its quoted-printable encoder is pure Python); a send writes one
per reader. So the message is assembled here from parts the stdlib encodes
quickly: ``binascii`` base64 for the bodies, ``email.utils`` and
``email.header`` for the headers. Tests parse every part back with ``email``.
"""

from __future__ import annotations

import binascii
import re
import uuid
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, parseaddr, quote
from functools import lru_cache

from newsletter.delivery.backends.base import Envelope, Recipient

CRLF = "\r\n"
MAX_LINE = 78  # RFC 5322's recommended line length
# Header folds at 76 so that an encoded word, alone on a continuation line
# after its space, is at most 75 characters (RFC 2047); at 78 it makes 77.
_FOLD_AT = 76


_LINES = re.compile(b".{1,76}", re.DOTALL)


@lru_cache(maxsize=64)
def _sender(sender: str) -> tuple[str, str]:
    """(encoded From value, domain): the same for every message of a send."""
    name, address = parseaddr(sender)
    return encode_address(name, address, "From"), address.rsplit("@", 1)[-1] if "@" in address else "localhost"


def domain_of(sender: str) -> str:
    return _sender(sender)[1]


def message_id(envelope: Envelope, recipient: Recipient) -> str:
    """Stable per issue and reader, so a resend is recognisably the same message."""
    test = f".test-{envelope.variant.key.replace('+', '-')}-{envelope.batch_id}" if envelope.test else ""
    return f"<{envelope.issue_id}.{recipient.token}{test}@{domain_of(envelope.sender)}>"


def _one_line(value: str) -> str:
    # A line break in a header value would start a header of the author's or
    # a reader's choosing (header injection).
    return " ".join(value.split())


@lru_cache(maxsize=64)
def encode_header(value: str, header: str = "Subject") -> str:
    """An unstructured header value, folded within 78 columns and RFC 2047-encoded if it is not ASCII.

    ``email.header.Header`` folds (at 76 characters, within RFC 5322's 78,
    so encoded words stay within RFC 2047's 75); cached: a send writes the
    same subject many times. (``email.policy.SMTP.fold`` writes an empty encoded
    word before a non-ASCII one in Python 3.11.)
    """
    value = _one_line(value)
    if value.isascii() and len(value) + len(header) + 2 <= MAX_LINE:
        return value
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=header, maxlinelen=_FOLD_AT).encode(linesep=CRLF)


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
# What a List-Id label may not hold (RFC 2919: dot-atom text; kept to the safest letters).
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


def _phrase(name: str, header: str) -> str:
    """A display name for a header: as is, quoted, or RFC 2047-encoded (folded)."""
    if name.isascii():
        return f'"{quote(name)}"' if _SPECIALS.search(name) else name
    return Header(name, "utf-8", header_name=header, maxlinelen=_FOLD_AT).encode(linesep=CRLF)


@lru_cache(maxsize=64)
def list_id(sender: str) -> str:
    """The ``List-Id`` value (RFC 2919) of the newsletter sent as ``sender``: ``Name <local.domain>``.

    The list is named after its sending address, ``digest@news.example.org``
    → ``<digest.news.example.org>``: the same for every issue, so a reader's
    filter on it keeps working, and under a domain the sender controls, as
    the RFC asks. The phrase is the sender's name, written as in ``From``.
    """
    name, address = parseaddr(_one_line(sender))
    local, _, domain = address.lower().rpartition("@")
    parts = [_NOT_LABEL.sub("-", p).strip("-") for p in [*local.split("."), *domain.split(".")]]
    ident = ".".join(p for p in parts if p) or "newsletter"
    if "." not in ident:
        ident += ".localhost"  # a list-id needs a label and a namespace
    return f"{_phrase(name, 'List-Id')} <{ident}>" if name else f"<{ident}>"


def encode_address(name: str, address: str, header: str = "To") -> str:
    """``Name <address>`` for a header: the name quoted or RFC 2047-encoded (folded), the address as is.

    A non-ASCII address (before the @: an internationalised one, RFC 6531)
    is written as UTF-8 (RFC 6532): only a provider or server that speaks
    SMTPUTF8 can deliver it, and the outbox keeps it as written.
    """
    name, address = _one_line(name), _one_line(address)
    if not name:
        return address
    return f"{_phrase(name, header)} <{address}>"


def _base64(text: str) -> bytes:
    # binascii in one call, then 76-column lines (RFC 2045): ~20x faster than
    # base64.encodebytes, and binascii's quoted-printable is slower still.
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False)
    return b"\r\n".join(_LINES.findall(encoded))


def build_message(envelope: Envelope, recipient: Recipient, when: datetime) -> bytes:
    """The whole message as bytes, CRLF line endings."""
    html, text = envelope.variant.fill(recipient.name, recipient.unsubscribe_url, recipient.preferences_url)
    # "=_" never occurs in base64 output, so it cannot clash with the body.
    boundary = f"=_{uuid.uuid4().hex}"
    unsubscribe = f"<{recipient.unsubscribe_url}>"
    if recipient.unsubscribe_mailto:
        unsubscribe += f",{CRLF} <{recipient.unsubscribe_mailto}>"  # folded: two URLs pass 78 columns
    headers = [
        f"From: {_sender(envelope.sender)[0]}",
        f"To: {encode_address(recipient.name, recipient.email)}",
        *([f"Reply-To: {encode_address(*parseaddr(envelope.reply_to), 'Reply-To')}"] if envelope.reply_to else []),
        f"Subject: {encode_header(envelope.subject)}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: {message_id(envelope, recipient)}",
        f"List-Id: {list_id(envelope.sender)}",
        # A reader's own confirmation or link email has no list to leave.
        *(
            [f"List-Unsubscribe: {unsubscribe}", "List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
            if recipient.unsubscribe_url
            else []
        ),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"',
    ]
    head = CRLF.join(headers) + CRLF + CRLF
    part = '--{b}\r\nContent-Type: text/{kind}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    return b"".join(
        (
            head.encode("utf-8"),  # ASCII but for an internationalised address (RFC 6532)
            part.format(b=boundary, kind="plain").encode("ascii"),
            _base64(text),
            b"\r\n",
            part.format(b=boundary, kind="html").encode("ascii"),
            _base64(html),
            b"\r\n",
            f"--{boundary}--\r\n".encode("ascii"),
        )
    )
