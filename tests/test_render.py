"""Rendering: templates → MJML → inlined HTML, the text part, variants and fill.

HTML is checked by parsing it (lxml, which premailer already depends on),
never against a byte snapshot: the assertions are about what a reader and
their mail client get.
"""

from __future__ import annotations

import re
import time

import pytest
from lxml import html as lxml_html

from newsletter.content.markdown import to_html, to_text
from newsletter.content.model import Issue
from newsletter.content.workspace import Workspace
from newsletter.errors import RenderError
from newsletter.render.renderer import Renderer, fill_sample
from newsletter.render.sizes import GMAIL_CLIP_BYTES, size_of
from newsletter.render.variant import Variant
from newsletter.settings import load_settings

from conftest import GOOD_SUMMARY, Newsletter

TITLE = "Alliance & Outcome: r < .30"
UNSUB = "https://nl.example.org/unsubscribe/?t=abc&x=1"
PREFS = "https://nl.example.org/preferences/?t=abc"
RICH_SUMMARY = GOOD_SUMMARY.replace("Therapist Empathy and Outcome", TITLE).replace(
    "Smith and colleagues studied *empathy* in 120 therapists.\n",
    "Smith and colleagues studied *empathy* in **120** therapists (see [the trial](https://example.org/trial)).\n\n"
    "- first finding\n- second finding\n\n<script>alert('x')</script>\n\n# Method\n\nA trial.\n",
)


# --- helpers ------------------------------------------------------------------


def workspace(nl: Newsletter, **overrides: object) -> Workspace:
    return Workspace(load_settings(nl.root, **overrides))


def render(
    nl: Newsletter, issue_id: str = "2030-01", slugs: list[str] | None = None, **overrides: object
) -> tuple[Variant, Issue]:
    ws = workspace(nl, **overrides)
    issue = ws.load(issue_id)
    return Renderer(ws.settings).render(issue, slugs), issue


def filled(variant: Variant, name: str = "Ada") -> tuple[str, str]:
    return variant.fill(name, UNSUB, PREFS)


def parse(page: str) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(page)


def text_of(doc: lxml_html.HtmlElement) -> str:
    body = doc.body
    return " ".join(body.text_content().split())


def styles(element: lxml_html.HtmlElement) -> dict[str, str]:
    declarations = (d.split(":", 1) for d in element.get("style", "").split(";") if ":" in d)
    return {k.strip().lower(): v.strip().lower() for k, v in declarations}


@pytest.fixture
def rich(newsletter: Newsletter) -> Newsletter:
    """A synthetic three-summary issue with Markdown, a tricky title and a note."""
    newsletter.issue(
        meta='---\nsubject: "Alliance & Outcome"\nintro: "Two studies on *therapists* & their clients."\n'
        "status: ready\n---\nA note from the editor with a [link](https://example.org/note).\n\n"
        "### On the menu\n\nThree studies.\n",
        summaries={
            "01-alliance.md": RICH_SUMMARY,
            "02-burnout.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", "Burnout in Trainees").replace(
                "Be empathic.", "Rest more, burn out less."
            ),
            "03-dropout.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", "Predicting Drop-Out").replace(
                "Be empathic.", "Ask about attendance early."
            ),
        },
    )
    return newsletter


# --- content -----------------------------------------------------------------


def test_full_sample_issue_has_every_title_citation_doi_and_implication(samples: Newsletter) -> None:
    variant, issue = render(samples, "2021-07")
    page, text = filled(variant)
    doc = parse(page)
    visible = text_of(doc)
    assert variant.key == "all" and len(issue.summaries) == 2
    for summary in issue.summaries:
        assert summary.title in [h.text_content() for h in doc.iter("h2")]
        assert " ".join(summary.title.split()) in " ".join(text.split())
        first_words = " ".join(summary.implications.split()[:6]).replace("*", "")
        assert first_words in visible and first_words in " ".join(text.split())
        assert summary.link and summary.link in [a.get("href") for a in doc.iter("a")]
        assert summary.link in text
        author = summary.citation.split(",")[0]
        assert author in visible and author in text
    assert [h.text_content() for h in doc.iter("h3")].count("Practice Implications") == 2
    assert text.count("PRACTICE IMPLICATIONS") == 2
    assert issue.subject in doc.findtext(".//h1") and issue.subject in text
    assert "July 2021" in visible and "July 2021" in text
    assert "Also this month" not in visible and "ALSO THIS MONTH" not in text


def test_intro_note_greeting_pills_and_footer(rich: Newsletter) -> None:
    variant, _ = render(rich, postal_address="PPRNet, 1 Research Way\nLeeds LS1 1AA")
    doc = parse(filled(variant)[0])
    visible = text_of(doc)
    assert "Dear Ada," in visible
    assert "A note from the editor with a link." in visible
    pills = [s.text_content() for s in doc.find_class("nl-pill")]
    assert pills.count("Empathy") == 3 and pills.count("Therapist Factors") == 3
    links = {a.text_content(): a.get("href") for a in doc.iter("a")}
    assert links["Unsubscribe"] == UNSUB and links["Change your topics"] == PREFS
    assert links["View in your browser"] == "https://newsletter.example.org/2030-01/"
    assert "PPRNet, 1 Research Way" in visible and "Leeds LS1 1AA" in visible


def test_unset_postal_address_shows_a_visible_placeholder(rich: Newsletter) -> None:
    variant, _ = render(rich)
    assert "[postal address not set]" in text_of(parse(filled(variant)[0]))
    assert "[postal address not set]" in filled(variant)[1]


def test_variant_has_only_its_summaries_and_lists_the_rest_under_also_this_month(rich: Newsletter) -> None:
    variant, _ = render(rich, slugs=["dropout", "alliance"])
    assert variant.key == "01+03" and variant.slugs == ("alliance", "dropout")
    page, text = filled(variant)
    doc = parse(page)
    assert [h.text_content() for h in doc.iter("h2")] == [
        "On the menu",
        TITLE,
        "Predicting Drop-Out",
        "Also this month",
    ]
    visible = text_of(doc)
    assert "Ask about attendance early." in visible and "Rest more, burn out less." not in visible
    also = [a for a in doc.iter("a") if a.text_content() == "Burnout in Trainees"]
    assert len(also) == 1 and also[0].get("href") == "https://newsletter.example.org/2030-01/burnout/"
    assert "Rest more" not in text and "ALSO THIS MONTH\n\n- Burnout in Trainees\n" in text
    # Shown in issue order whatever the order asked for.
    assert text.index(TITLE) < text.index("Predicting Drop-Out")


def test_also_this_month_can_be_turned_off(rich: Newsletter) -> None:
    variant, _ = render(rich, slugs=["burnout"], also_this_month=False)
    page, text = filled(variant)
    assert "Also this month" not in text_of(parse(page)) and "ALSO THIS MONTH" not in text
    assert TITLE not in text and "Burnout in Trainees" in text


def test_selections_full_issue_first_then_every_subset_in_issue_order(rich: Newsletter) -> None:
    ws = workspace(rich)
    issue = ws.load("2030-01")
    renderer = Renderer(ws.settings)
    keys = [renderer.render(issue, s).key for s in issue.selections()]
    assert keys == ["all", "01+02", "01+03", "02+03", "01", "02", "03"]
    assert list(issue.selections())[3] == ("burnout", "dropout")
    with pytest.raises(ValueError, match="no summary 'nope'"):
        renderer.render(issue, ["nope"])
    with pytest.raises(ValueError, match="at least one"):
        renderer.render(issue, [])


# --- escaping and Markdown ------------------------------------------------------


def test_author_text_shows_exactly_as_typed(rich: Newsletter) -> None:
    variant, _ = render(rich)
    page, text = filled(variant)
    doc = parse(page)
    assert TITLE in [h.text_content() for h in doc.iter("h2")]
    assert "Alliance &amp; Outcome: r &lt; .30" in page and TITLE not in page
    assert f"{TITLE}\n" in text
    assert doc.findtext(".//title") == "Alliance & Outcome · PPRNet Research Digest"


@pytest.mark.parametrize(
    "name, escaped",
    [
        ("Bob <b>", "Bob &lt;b&gt;"),
        ("Chloé & Co", "Chloé &amp; Co"),
        ('Ann "Q" O\'Neil', "Ann &quot;Q&quot; O&#x27;Neil"),
    ],
)
def test_fill_escapes_names_in_html_and_keeps_them_raw_in_text(rich: Newsletter, name: str, escaped: str) -> None:
    variant, _ = render(rich)
    page, text = filled(variant, name)
    greeting = parse(page).find_class("nl-greeting")[0]
    assert greeting.text_content() == f"Dear {name},"
    assert len(greeting) == 0  # no element smuggled in by the name
    assert f"Dear {escaped}," in page and f"Dear {name}," in text


def test_empty_name_greets_the_reader(rich: Newsletter) -> None:
    variant, _ = render(rich)
    page, text = variant.fill("", UNSUB, PREFS)
    assert parse(page).find_class("nl-greeting")[0].text_content() == "Dear reader,"
    assert "Dear reader," in text


def test_urls_are_escaped_in_html_attributes_and_raw_in_text(rich: Newsletter) -> None:
    variant, _ = render(rich)
    page, text = filled(variant)
    assert 'href="https://nl.example.org/unsubscribe/?t=abc&amp;x=1"' in page
    assert f"Unsubscribe:\n{UNSUB}\n" in text


def test_placeholder_tokens_typed_by_an_author_are_not_filled(newsletter: Newsletter) -> None:
    newsletter.issue(
        summaries={
            "01-a.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", "Go to __nl_unsubscribe_url__").replace(
                "Be empathic.", "Dear `__nl_name__`, hello."
            ),
            "02-b.md": GOOD_SUMMARY.replace("Therapist Empathy", "B"),
        }
    )
    variant, _ = render(newsletter)
    page, text = filled(variant, name="Ada")
    for part, url in ((page, UNSUB.replace("&", "&amp;")), (text, UNSUB)):
        assert part.count(url) == 1 and part.count("Ada") == 1  # the footer link and the greeting only
    assert "Go to _\u200c_nl_unsubscribe_url__\n" in text


def test_markdown_emphasis_lists_and_links_render_and_raw_html_is_escaped(rich: Newsletter) -> None:
    variant, _ = render(rich)
    page, text = filled(variant)
    doc = parse(page)
    card = next(h for h in doc.iter("h2") if h.text_content() == TITLE).getparent()
    assert [e.text_content() for e in card.iter("em")] == ["empathy"]
    assert [e.text_content() for e in card.iter("strong")] == ["120"]
    assert [li.text_content() for li in card.iter("li")] == ["first finding", "second finding"]
    assert [a.get("href") for a in card.iter("a") if a.text_content() == "the trial"] == ["https://example.org/trial"]
    assert not list(doc.iter("script")) and "<script>alert('x')</script>" in text_of(doc)
    assert "the trial (https://example.org/trial)" in " ".join(text.split())
    assert "- first finding\n- second finding" in text
    assert "*empathy*" in text and "<script>alert('x')</script>" in text


def test_markdown_links_that_go_nowhere_become_text() -> None:
    assert to_html("See [the docs](/docs) and [mail](mailto:a@b.org).") == (
        '<p>See the docs and <a href="mailto:a@b.org">mail</a>.</p>\n'
    )
    assert to_text("See [the docs](/docs) and [mail](mailto:a@b.org).") == "See the docs and mail (a@b.org)."


def test_markdown_headings_never_outrank_their_section() -> None:
    assert to_html("## Sub\n\n#### Subsub", heading_level=3) == "<h3>Sub</h3>\n<h5>Subsub</h5>\n"
    assert to_html("# Top", heading_level=4) == "<h4>Top</h4>\n"


def test_markdown_text_lists_quotes_and_wrapping() -> None:
    source = (
        "A paragraph that is long enough to need wrapping at a narrow width of forty columns.\n\n"
        "1. one\n2. two that wraps onto a second line here\n\n> quoted"
    )
    assert to_text(source, 40) == (
        "A paragraph that is long enough to need\nwrapping at a narrow width of forty\ncolumns.\n\n"
        "1. one\n2. two that wraps onto a second line\n   here\n\n> quoted"
    )


# --- email-client safety ------------------------------------------------------------


def test_every_link_is_absolute_once_filled(samples: Newsletter, rich: Newsletter) -> None:
    for nl, issue_id in ((samples, "2021-07"), (rich, "2030-01")):
        for slugs in (None, [workspace(nl).load(issue_id).summaries[0].slug]):
            variant, _ = render(nl, issue_id, slugs)
            hrefs = [a.get("href") for a in parse(filled(variant)[0]).iter("a")]
            assert hrefs and all(re.match(r"^(https?://|mailto:)", h or "") for h in hrefs), hrefs


def test_no_scripts_stylesheets_or_external_resources(samples: Newsletter) -> None:
    variant, _ = render(samples, "2021-07")
    page = filled(variant)[0]
    doc = parse(page)
    assert not list(doc.iter("script")) and not list(doc.iter("img"))
    assert not [link for link in doc.iter("link") if "stylesheet" in (link.get("rel") or "")]
    css = " ".join(s.text_content() for s in doc.iter("style")) + " ".join(
        e.get("style", "") for e in doc.iter() if isinstance(e.tag, str)
    )
    assert "url(" not in css and "@import" not in css and "fonts.googleapis" not in page


def test_document_shell_lang_doctype_meta_and_dark_mode(rich: Newsletter) -> None:
    variant, _ = render(rich)
    page = filled(variant)[0]
    assert page.startswith("<!DOCTYPE html>")
    doc = parse(page)
    assert doc.get("lang") == "en"
    metas = {m.get("name"): m.get("content") for m in doc.iter("meta") if m.get("name")}
    assert metas["color-scheme"] == "light dark" and metas["supported-color-schemes"] == "light dark"
    css = "\n".join(s.text_content() for s in doc.iter("style"))
    start = re.search(r"@media \(prefers-color-scheme:\s*dark\)", css)
    assert start
    dark = css[start.start() :]
    assert re.search(r"\.nl-prose[^{]*\{\s*color:\s*#e2e8f0 !important", dark)
    assert re.search(r"body,\s*\.nl-bg\s*\{\s*background-color:\s*#0f172a !important", dark)


def test_responsive_media_queries_keep_important(rich: Newsletter) -> None:
    page = filled(render(rich)[0])[0]
    css = "\n".join(s.text_content() for s in parse(page).iter("style"))
    query = re.search(r"@media only screen and \(min-width:480px\)\s*\{(.*?)\}\s*\}", css, re.S)
    assert query and "width:100% !important" in query.group(1)


def test_headings_are_in_order(samples: Newsletter, rich: Newsletter) -> None:
    for nl, issue_id in ((samples, "2021-07"), (rich, "2030-01")):
        for slugs in (None, [workspace(nl).load(issue_id).summaries[-1].slug]):
            doc = parse(filled(render(nl, issue_id, slugs)[0])[0])
            levels = [int(e.tag[1]) for e in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
            assert levels[0] == 1 and levels.count(1) == 1, levels
            deepest = 1
            for level in levels:
                assert level <= deepest + 1, levels
                deepest = level


def test_preheader_is_the_intro_first_in_body_and_hidden(rich: Newsletter) -> None:
    doc = parse(filled(render(rich)[0])[0])
    first = next(e for e in doc.body.iter() if isinstance(e.tag, str) and (e.text or "").strip())
    assert first.tag == "div" and first.text_content() == "Two studies on therapists & their clients."
    hidden = styles(first)
    assert hidden["display"] == "none" and hidden["mso-hide"] == "all"
    # Hidden by display alone: a colour like the background's is what spam filters score.
    assert not {"color", "font-size", "opacity"} & set(hidden)


def test_sample_variants_are_well_under_gmail_clipping(samples: Newsletter) -> None:
    ws = workspace(samples)
    renderer = Renderer(ws.settings)
    for issue_id in ws.issue_ids():
        loaded = ws.read(issue_id)
        if loaded.issue is None or any(p.severity == "error" for p in loaded.problems):
            continue
        for selection in loaded.issue.selections():
            page, _ = fill_sample(renderer.render(loaded.issue, selection), ws.settings.base_url)
            assert size_of(page) < 80 * 1024 < GMAIL_CLIP_BYTES, (issue_id, selection)


# --- text part --------------------------------------------------------------------


def test_text_part_is_wrapped_and_complete(samples: Newsletter) -> None:
    for slugs in (None, ["therapist-burnout"]):
        variant, issue = render(samples, "2021-07", slugs)
        text = fill_sample(variant, "https://newsletter.example.org")[1]  # links as long as real ones
        for line in text.splitlines():
            assert len(line) <= 78 or re.fullmatch(r"\s*https?://\S+", line), line  # only a URL may run long
        for summary in issue.summaries:
            if slugs is None or summary.slug in slugs:
                assert summary.doi_url and summary.doi_url in text.splitlines()
                assert " ".join(summary.citation.split()[:3]) in " ".join(text.split())
        assert "Dear reader," in text and "<" not in text
        links = "https://newsletter.example.org/{}/?t=preview-not-a-real-tok"
        assert f"Unsubscribe:\n{links.format('unsubscribe')}\n" in text
        assert f"Change your topics:\n{links.format('preferences')}\n" in text
        assert "View in your browser:\nhttps://newsletter.example.org/2021-07/\n" in text


# --- placeholders ------------------------------------------------------------------


def test_fill_leaves_no_token_and_is_microseconds_per_reader(samples: Newsletter) -> None:
    variant, _ = render(samples, "2021-07")
    page, text = filled(variant)
    assert "__nl_" not in page and "__nl_" not in text
    assert "__nl_name__" in variant.html and "__nl_unsubscribe_url__" in variant.text
    runs = 2000
    start = time.perf_counter()
    for i in range(runs):
        variant.fill(f"Reader {i}", UNSUB, PREFS)
    per_reader = (time.perf_counter() - start) / runs
    assert per_reader < 500e-6, f"{per_reader * 1e6:.0f} µs per reader"


def test_with_tags_puts_provider_tags_in_unescaped(rich: Newsletter) -> None:
    variant, _ = render(rich)
    page, text = variant.with_tags(
        {
            "name": "-name-",
            "unsubscribe_url": "<%asm_group_unsubscribe_raw_url%>",
            "preferences_url": "<%asm_preferences_raw_url%>",
        }
    )
    assert 'href="<%asm_group_unsubscribe_raw_url%>"' in page and "Dear -name-," in page
    assert "Unsubscribe:\n<%asm_group_unsubscribe_raw_url%>" in text and "__nl_" not in page + text
    with pytest.raises(ValueError, match="missing"):
        variant.with_tags({"name": "-name-"})


# --- template errors ---------------------------------------------------------------


def _break(nl: Newsletter, template: str, old: str, new: str) -> None:
    path = nl.root / "templates" / template
    source = path.read_text(encoding="utf-8")
    assert old in source
    path.write_text(source.replace(old, new, 1), encoding="utf-8")


def _line_of(nl: Newsletter, template: str, needle: str) -> int:
    lines = (nl.root / "templates" / template).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_jinja_syntax_error_names_template_and_line(rich: Newsletter) -> None:
    _break(rich, "_summary.mjml.j2", "{% endfor %}", "{% endfro %}")
    line = _line_of(rich, "_summary.mjml.j2", "{% endfro %}")
    with pytest.raises(RenderError, match=rf"^templates/_summary\.mjml\.j2:{line}: TemplateSyntaxError: .*'endfro'"):
        render(rich)


def test_undefined_variable_names_template_and_line(rich: Newsletter) -> None:
    _break(rich, "_footer.mjml.j2", "{{ view_url }}", "{{ view_link }}")
    line = _line_of(rich, "_footer.mjml.j2", "view_link")
    with pytest.raises(
        RenderError, match=rf"^templates/_footer\.mjml\.j2:{line}: UndefinedError: 'view_link' is undefined"
    ):
        render(rich)


def test_text_template_errors_are_render_errors_too(rich: Newsletter) -> None:
    _break(rich, "email.txt.j2", "{{ rule() }}\nALSO", "{{ rule( }}\nALSO")
    with pytest.raises(RenderError, match=r"^templates/email\.txt\.j2:\d+: TemplateSyntaxError"):
        render(rich)


def test_mjml_error_is_mapped_back_to_the_template_line(rich: Newsletter) -> None:
    _break(rich, "email.mjml.j2", "<mj-style>", "<mj-stlye>")
    line = _line_of(rich, "email.mjml.j2", "<mj-stlye>")
    with pytest.raises(
        RenderError, match=rf"^templates/email\.mjml\.j2:{line}: MJML: unexpected element near 'mj-stlye'"
    ):
        render(rich)


def test_tag_left_open_is_located_in_the_partial(rich: Newsletter) -> None:
    _break(rich, "_summary.mjml.j2", "{{ summary.title }}</a></h2>", "{{ summary.title }}</a>")
    line = _line_of(rich, "_summary.mjml.j2", "{{ summary.title }}")
    with pytest.raises(RenderError, match=rf"^templates/_summary\.mjml\.j2:{line}: MJML: .*<h2> is not closed"):
        render(rich)


def test_unknown_mjml_element_is_an_error_not_silently_dropped(rich: Newsletter) -> None:
    _break(rich, "_footer.mjml.j2", "<mj-column>", "<mj-colum>")
    line = _line_of(rich, "_footer.mjml.j2", "<mj-colum>")
    with pytest.raises(RenderError, match=rf"^templates/_footer\.mjml\.j2:{line}: MJML: unknown element <mj-colum>"):
        render(rich)


def test_a_template_the_author_removed_comes_from_the_package(rich: Newsletter) -> None:
    own, _ = render(rich)
    (rich.root / "templates" / "email.txt.j2").unlink()
    (rich.root / "templates" / "_footer.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>MY FOOTER</mj-text></mj-column></mj-section>\n"
    )
    variant, _ = render(rich)
    assert variant.text == own.text  # the packaged email.txt.j2, the same as the copy that was removed
    assert "MY FOOTER" in variant.html  # the author's own template still wins


# --- contrast ----------------------------------------------------------------------


def _hex(value: str) -> tuple[float, float, float] | None:
    match = re.search(r"#([0-9a-f]{6}|[0-9a-f]{3})\b", value.lower())
    if not match:
        return None
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _luminance(rgb: tuple[float, float, float]) -> float:
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _effective(element: lxml_html.HtmlElement, prop: str) -> tuple[float, float, float] | None:
    for node in [element, *element.iterancestors()]:
        css = styles(node)
        for key in (prop,) if prop == "color" else ("background-color", "background"):
            if key in css and (rgb := _hex(css[key])):
                return rgb
        if prop != "color" and node.get("bgcolor") and (rgb := _hex(node.get("bgcolor"))):
            return rgb
    return None


def _hidden(element: lxml_html.HtmlElement) -> bool:
    return any(styles(n).get("display") == "none" for n in [element, *element.iterancestors()])


def test_every_visible_text_has_at_least_4_5_to_1_contrast(samples: Newsletter, rich: Newsletter) -> None:
    checked = 0
    for nl, issue_id, slugs in ((samples, "2021-07", None), (rich, "2030-01", ["burnout"])):
        doc = parse(filled(render(nl, issue_id, slugs, postal_address="1 Research Way")[0])[0])
        for element in doc.body.iter():
            if not isinstance(element.tag, str):
                continue  # comments (Outlook conditionals)
            own_text = (element.text or "").strip() or any((c.tail or "").strip() for c in element)
            if not own_text or _hidden(element):
                continue
            color = _effective(element, "color") or (0.0, 0.0, 0.0)
            background = _effective(element, "background") or (1.0, 1.0, 1.0)
            ratio = contrast(color, background)
            assert ratio >= 4.5, (
                f"{ratio:.2f}:1 for {element.tag}.{element.get('class')}: {element.text_content()[:40]!r}"
            )
            checked += 1
    assert checked > 40  # the walk really looked at the email's text
