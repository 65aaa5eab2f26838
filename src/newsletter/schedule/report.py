"""The author's report after a scheduled run, sent the way the issues go.

With the outbox backend the report is a plain-text message in
``<outbox>/reports/``, built with the stdlib ``email`` package (one small
message: the speed ``backends/message.py`` buys for newsletters is not needed).
Through another backend (SendGrid) it is mailed to NEWSLETTER_AUTHOR_EMAIL
with the backend's own ``send``. When that cannot be done (no address set, a
setting missing, the provider refusing) the report is kept in
``<outbox>/reports/`` all the same and the log says so: a report must not be
lost because the thing it reports on is broken.
"""

from __future__ import annotations

import html
import logging
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from newsletter.delivery.backends import select_backend
from newsletter.delivery.backends.base import Backend, Envelope, Recipient
from newsletter.errors import BatchFailed, ConfigError, NewsletterError
from newsletter.render.variant import Variant, defuse
from newsletter.settings import SAMPLE_FROM, Settings
from newsletter.support.files import write_atomic

log = logging.getLogger("newsletter.schedule.runner")

REPORTS_FOLDER = "reports"
REPORT_ID = "report"  # the Envelope's issue id: SendGrid files it under category issue-report


def deliver_report(settings: Settings, subject: str, text: str, when: datetime) -> str:
    """Send the report to the author through the configured backend; say where it went."""
    backend = select_backend(settings)
    if backend.name != "outbox":
        if settings.author_email:
            try:
                _send_through(backend, settings, subject, text)
                return f"emailed to {settings.author_email} via {backend.describe()}"
            except NewsletterError as err:
                log.error("cannot email the report to %s: %s", settings.author_email, err)
            except Exception as err:  # the report must survive whatever broke the send
                log.exception("cannot email the report to %s: %s", settings.author_email, type(err).__name__)
        else:
            log.warning("NEWSLETTER_AUTHOR_EMAIL is not set: the report is not emailed")
    try:
        path = write_report(settings.outbox_dir / REPORTS_FOLDER, report_message(settings, subject, text, when))
    except OSError as err:
        log.error("cannot write the report to %s: %s", settings.outbox_dir / REPORTS_FOLDER, err.strerror or err)
        return "lost: it could be neither sent nor written (see the log above)"
    to = f" (to {settings.author_email})" if settings.author_email and backend.name == "outbox" else ""
    return f"written to {path}{to}"


def report_message(settings: Settings, subject: str, text: str, when: datetime) -> EmailMessage:
    """A plain-text RFC 5322 message: From, To (if NEWSLETTER_AUTHOR_EMAIL is set), Subject, Date."""
    # RFC 5322's own limit: the stdlib's default of 78 folds a long Subject
    # right after "Subject:", which its own parser then reads back with a leading space.
    msg = EmailMessage(policy=SMTP.clone(max_line_length=998))
    sender = settings.from_address or SAMPLE_FROM
    msg["From"] = sender
    if settings.author_email:
        msg["To"] = settings.author_email
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when.astimezone(UTC))
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid("report", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    msg.set_content(text)
    return msg


def write_report(folder: Path, msg: EmailMessage) -> Path:
    """Write ``msg`` as ``<UTC time>-<random>.eml``, atomically (a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:6]}.eml"  # sorts by time
    write_atomic(path, msg.as_bytes())
    return path


def _send_through(backend: Backend, settings: Settings, subject: str, text: str) -> None:
    """One message to the author through ``backend``, like a one-reader batch with no ledger."""
    if not settings.from_address:
        raise ConfigError("NEWSLETTER_FROM is not set")
    text = defuse(text)  # the report quotes issue files: no placeholder may survive into it
    body = f'<pre style="font-family: monospace; white-space: pre-wrap">{html.escape(text)}</pre>'
    variant = Variant(issue_id=REPORT_ID, key=REPORT_ID, slugs=(), subject=subject, html=body, text=text)
    envelope = Envelope(REPORT_ID, variant, subject, settings.from_address, None, uuid.uuid4().hex)
    name, address = parseaddr(settings.author_email)
    outcome = backend.send(envelope, [Recipient(address, name, "", "", "")])
    if outcome.failed:
        raise BatchFailed("; ".join(outcome.failed.values()))
