"""The email as its readers' programs see it: words apart, headers folded, List-Id, links, bytes.

The HTML is judged by its text as a mail client shows it (block elements
start a new line, inline ones do not), parsed with lxml; messages are
parsed back with the stdlib ``email`` package from the outbox's files.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from lxml import etree
from lxml import html as lxml_html

from newsletter.content.workspace import Workspace
from newsletter.delivery.backends.base import Envelope, Recipient
from newsletter.delivery.backends.sendgrid import SendGridBackend
from newsletter.render.environment import make_environment
from newsletter.render.mjml import MjmlRenderer
from newsletter.render.renderer import HTML_TEMPLATE, Renderer, fill_sample
from newsletter.render.sizes import size_of
from newsletter.settings import load_settings

from conftest import Newsletter

# Hard-wrapped Markdown, as an editor types it: inline elements at both ends of lines.
WRAPPED = """\
---
title: "Large effects, plainly"
citation: "Smith, A. (2021). *Effects* of things. Psychotherapy, 58(1), 1–10."
doi: "10.1037/pst0000001"
topics:
  - Therapist Factors
  - Outcomes and Deterioration
  - Training
---
Smith and colleagues found *large effects*
[in this trial](https://example.org) and **more**
*here* today. See `code`
<https://example.org/autolink> and **bold**
_under_ lines.

- a list item with *emphasis*
  **continued** on a line
- and [a link](https://example.org/x)
  `wrapped`

## Practice Implications

Ask *early*
**often** and [listen](https://example.org/l)
closely.
"""
# What a reader must see: every space of the source.
WRAPPED_WORDS = [
    "Smith and colleagues found large effects in this trial and more here today. See code "
    "https://example.org/autolink and bold under lines.",
    "a list item with emphasis continued on a line",
    "and a link wrapped",
    "Ask early often and listen closely.",
    "Therapist Factors Outcomes and Deterioration Training",  # the topic pills
    "View in your browser · Change your topics · Unsubscribe",
]
# Elements a mail client starts on a new line (so no space is needed between them).
BLOCKS = frozenset(
    [
        "html",
        "body",
        "head",
        "div",
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "table",
        "tbody",
        "thead",
        "tr",
        "td",
        "th",
        "blockquote",
        "pre",
        "br",
        "hr",
    ]
)


def shown_text(root: etree._Element) -> str:
    """The text a client shows, words separated as it would: blocks apart, inline elements joined."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        block = tag in BLOCKS or tag.startswith("mj-")
        if tag and tag not in ("style", "title", "mj-style", "mj-title", "mj-attributes", "mj-head", "head"):
            if block:
                parts.append(" ")
            parts.append(node.text or "")
            for child in node:
                walk(child)
            if block:
                parts.append(" ")
        if node.getparent() is not None:
            parts.append(node.tail or "")

    walk(root)
    return " ".join("".join(parts).split())


def html_words(page: str) -> str:
    return shown_text(lxml_html.document_fromstring(page).body)


def mjml_words(mjml: str) -> str:
    """The words of the MJML's body, as written (the templates' and the author's spaces)."""
    body = mjml[mjml.index("<mj-body") : mjml.index("</mj-body>") + len("</mj-body>")]
    return shown_text(lxml_html.fragment_fromstring(body, create_parent="div"))


def test_every_word_boundary_of_hard_wrapped_markdown_and_pills_survives(newsletter: Newsletter) -> None:
    newsletter.issue(summaries={"01-wrapped.md": WRAPPED})
    ws = Workspace(load_settings(newsletter.root))
    variant = Renderer(ws.settings).render(ws.load("2030-01"))
    page, text = fill_sample(variant, ws.settings.base_url)
    shown = html_words(page)
    for words in WRAPPED_WORDS:
        assert words in shown, f"{words!r} not in the HTML's text"
    # Words the text part has, the HTML part has too (it never ran them together).
    assert "found *large effects* in this trial" in " ".join(text.split())


def test_html_text_has_every_word_of_the_mjml_apart_on_every_sample_variant(
    samples: Newsletter, newsletter: Newsletter
) -> None:
    newsletter.issue(summaries={"01-wrapped.md": WRAPPED, "02-other.md": WRAPPED.replace("Large effects", "Other")})
    checked = 0
    for nl in (samples, newsletter):
        ws = Workspace(load_settings(nl.root))
        renderer = Renderer(ws.settings)
        mjml = MjmlRenderer(make_environment(renderer.templates_dir), renderer.templates_dir)
        for issue_id in ws.issue_ids():
            loaded = ws.read(issue_id)
            if loaded.issue is None or any(p.severity == "error" for p in loaded.problems):
                continue
            for selection in loaded.issue.selections():
                source = mjml.mjml(HTML_TEMPLATE, renderer.context(loaded.issue, set(selection))).source
                page = renderer.render(loaded.issue, selection).html
                assert html_words(page) == mjml_words(source), (issue_id, selection)
                checked += 1
    assert checked >= 9  # six sample variants and three of the wrapped issue


# --- headers ------------------------------------------------------------------

LONG_SUBJECT = "Thérapie — effets indésirables, épuisement des thérapeutes et résultats des patients : une revue"


def sent(nl: Newsletter, issue_id: str = "2021-07") -> list[Path]:
    result = nl.cli("send", issue_id, "--yes")
    assert result.exit_code == 0, result.stderr
    return sorted((nl.root / "outbox" / issue_id).glob("*.eml"))


def test_long_non_ascii_subject_is_folded_and_round_trips(samples: Newsletter) -> None:
    issue_md = samples.root / "issues" / "2021-07" / "issue.md"
    issue_md.write_text(
        re.sub(r'subject: ".*"', f'subject: "{LONG_SUBJECT}"', issue_md.read_text(encoding="utf-8")), encoding="utf-8"
    )
    for path in sent(samples):
        raw = path.read_bytes()
        head = raw[: raw.index(b"\r\n\r\n")]
        subject = re.search(rb"^Subject:.*?(?=\r\n(?! ))", head, re.M | re.S)
        assert subject, head
        lines = subject.group(0).split(b"\r\n")
        assert len(lines) > 1  # folded: one line would be far over 78
        assert all(len(line) <= 78 for line in lines), lines
        assert all(len(word) <= 75 for word in re.findall(rb"=\?[^?]+\?[bq]\?[^?]*\?=", subject.group(0), re.I))
        assert all(len(line) <= 998 for line in head.split(b"\r\n"))  # RFC 5322's hard limit, every header
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["Subject"] == LONG_SUBJECT


def test_every_outbox_message_and_sendgrid_payload_has_the_list_id(samples: Newsletter) -> None:
    ids = set()
    for path in sent(samples):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        ids.add(str(message["List-Id"]))
    # The sample sender: "PPRNet Research Digest <digest@newsletter.example.org>" (RFC 2919: label.namespace).
    assert ids == {"PPRNet Research Digest <digest.newsletter.example.org>"}

    ws = Workspace(load_settings(samples.root))
    variant = Renderer(ws.settings).render(ws.load("2021-07"))
    envelope = Envelope("2021-07", variant, "Subject", "PPRNet Research Digest <digest@newsletter.example.org>")
    backend = SendGridBackend("SG.not-used", host="https://api.sendgrid.test", asm_group_id=1)
    payload = backend.build(envelope, [Recipient("a@example.org", "A", "tok", "https://u", "https://p")])
    assert payload["headers"] == {"List-Id": "PPRNet Research Digest <digest.newsletter.example.org>"}


def test_sample_send_has_a_sample_postal_address_and_says_so(samples: Newsletter) -> None:
    result = samples.cli("send", "2021-07", "--yes")
    assert result.exit_code == 0 and "NEWSLETTER_POSTAL_ADDRESS" in result.stderr
    for path in (samples.root / "outbox" / "2021-07").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for part in message.iter_parts():
            content = part.get_content()
            assert "1 Example Street" in content and "not set" not in content


# --- text part and size -----------------------------------------------------------


def test_text_part_gives_the_web_page_of_each_summary_it_includes(samples: Newsletter) -> None:
    ws = Workspace(load_settings(samples.root))
    renderer = Renderer(ws.settings)
    issue = ws.load("2021-07")
    for selection in issue.selections():
        text = renderer.render(issue, selection).text
        for summary in issue.summaries:
            url = f"{ws.settings.base_url}/2021-07/{summary.slug}/"
            assert url in text  # its own summaries, and those under "Also this month"
            if summary.slug in selection:
                assert f"Read it on the web:\n{url}\n" in text


def test_full_sample_issue_is_under_28_kb_with_only_what_cannot_be_inlined_in_head(samples: Newsletter) -> None:
    ws = Workspace(load_settings(samples.root))
    page, _ = fill_sample(Renderer(ws.settings).render(ws.load("2021-07")), ws.settings.base_url)
    assert size_of(page) < 28_000, size_of(page)  # was 33,477 bytes
    doc = lxml_html.document_fromstring(page)
    head_css = " ".join(s.text_content() for s in doc.iter("style"))
    # The inlined rules (.nl-kicker...) are not repeated in <head>; MJML's resets are there once, not per cell.
    assert ".nl-kicker" not in head_css and ".nl-citation{" not in head_css
    assert page.count("mso-table-lspace") == 1
    assert "@media (prefers-color-scheme:dark)" in head_css and "[data-ogsc]" in head_css
    # premailer's bgcolor only where HTML has it: tables and cells.
    assert {e.tag for e in doc.iter() if isinstance(e.tag, str) and e.get("bgcolor")} <= {"table", "td", "tr", "body"}
    kicker = next(doc.find_class("nl-kicker")[0].iter())
    assert "text-transform:uppercase" in kicker.get("style", "").replace(" ", "")  # still inlined
