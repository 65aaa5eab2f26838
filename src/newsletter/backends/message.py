"""One RFC 5322 message for one reader: headers, text part first, HTML part."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr

from newsletter.backends.base import Envelope, Recipient

# Folding at 78 columns makes the email package RFC 2047-encode a long
# List-Unsubscribe URL, which mail clients then cannot use; RFC 5322's hard
# limit is 998.
POLICY = SMTP.clone(max_line_length=998)


def domain_of(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rsplit("@", 1)[-1] if "@" in address else "localhost"


def message_id(envelope: Envelope, recipient: Recipient) -> str:
    """Stable per issue and reader, so a resend is recognisably the same message."""
    test = f".test-{envelope.variant.key.replace('+', '-')}-{envelope.batch_id}" if envelope.test else ""
    return f"<{envelope.issue_id}.{recipient.token}{test}@{domain_of(envelope.sender)}>"


def build_message(envelope: Envelope, recipient: Recipient, when: datetime) -> EmailMessage:
    html, text = envelope.variant.fill(recipient.name, recipient.unsubscribe_url, recipient.preferences_url)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = envelope.sender
    msg["To"] = formataddr((recipient.name, recipient.email)) if recipient.name else recipient.email
    if envelope.reply_to:
        msg["Reply-To"] = envelope.reply_to
    msg["Subject"] = envelope.subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id(envelope, recipient)
    unsubscribe = f"<{recipient.unsubscribe_url}>"
    if recipient.unsubscribe_mailto:
        unsubscribe += f", <{recipient.unsubscribe_mailto}>"
    msg["List-Unsubscribe"] = unsubscribe
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg
