"""The web archive: pages, feeds, citation metadata, and the command that builds it."""

from __future__ import annotations

import json
import operator
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urldefrag

import html5lib
import lxml.html
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.content.citation import Author, parse_apa, parse_authors
from newsletter.content.markdown import plain
from newsletter.content.workspace import Workspace
from newsletter.render.renderer import Renderer
from newsletter.render.variant import TOKENS
from newsletter.settings import load_settings
from newsletter.web import archive

from conftest import GOOD_SUMMARY, Newsletter

ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://digest.example.com/archive"
READY = ["2021-08", "2021-07", "2021-06", "2021-05"]  # the sample issues but the 2021-03 draft, newest first
DRAFT_TITLE = "How Much Psychotherapy is Really Necessary for Clients to Improve?"
CRYING = "2021-08/patients-crying/"


def build(nl: Newsletter, out: Path | None = None, **env: str) -> Path:
    settings = load_settings(nl.root, **env)
    target = out or nl.root / "site"
    archive.build_site(archive.collect(Workspace(settings)), settings, target)
    return target


@pytest.fixture
def site(samples: Newsletter, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_BASE_URL", BASE)
    return build(samples)


def page(site: Path, path: str) -> lxml.html.HtmlElement:
    return lxml.html.fromstring((site / path / "index.html").read_bytes())


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def site_path(page_file: Path, href: str, site: Path) -> str:
    """A relative link on ``page_file`` as a site path like ``2021-07/`` (index.html dropped)."""
    resolved = (page_file.parent / urldefrag(href).url).resolve().relative_to(site.resolve()).as_posix()
    return re.sub(r"(^|/)index\.html$", r"\1", resolved)


def expected_topics(nl: Newsletter) -> dict[str, set[str]]:
    """Topic slug → site paths of the ready summaries tagged with it, straight from the sources."""
    ws = Workspace(load_settings(nl.root))
    found: dict[str, set[str]] = {}
    for issue_id in READY:
        issue = ws.load(issue_id)
        for summary in issue.summaries:
            for topic in summary.topics:
                found.setdefault(topic.slug, set()).add(f"{issue_id}/{summary.slug}/")
    return found


# --- the command -----------------------------------------------------------------------------------


def test_cli_builds_the_archive_and_says_what_it_wrote(samples: Newsletter) -> None:
    result = samples.cli("archive")
    assert result.exit_code == 0, result.stderr
    site = samples.root / "site"
    assert result.stdout.splitlines() == [
        f"archive of 4 issues (5 summaries, 12 topics) in {site}: 22 pages, 13 feeds",
        "left out 1 draft: 2021-03",
        f"open {site}/index.html",
    ]
    assert result.stderr == ""
    assert (site / "index.html").is_file() and (site / "2021-07" / "index.html").is_file()


def test_cli_out_option_and_rebuild_replaces_the_whole_site(samples: Newsletter, tmp_path: Path) -> None:
    out = tmp_path / "www" / "public"
    assert samples.cli("archive", "--out", str(out)).exit_code == 0
    (samples.root / "issues/2021-05/issue.md").write_text(
        (samples.root / "issues/2021-05/issue.md").read_text().replace("status: ready", "status: draft")
    )
    result = samples.cli("archive", "--out", str(out))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:2] == [
        f"archive of 3 issues (4 summaries, 10 topics) in {out}: 18 pages, 11 feeds",
        "left out 2 drafts: 2021-03, 2021-05",
    ]
    assert not (out / "2021-05").exists()  # a page from the previous build does not linger
    assert not (out / "topics" / "common-factors").exists()
    assert [p.name for p in out.parent.iterdir()] == ["public"]  # no staging or old folder left behind


def test_cli_refuses_to_replace_a_folder_it_did_not_build(samples: Newsletter, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("years of work")
    result = samples.cli("archive", "--out", str(tmp_path / "mine"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: refusing to replace {tmp_path / 'mine'}: it is not a site `newsletter archive` "
        "built (no .newsletter-archive file); choose another --out folder\n"
    )
    assert (tmp_path / "mine" / "thesis.docx").read_text() == "years of work"


def test_cli_ready_issue_with_errors_is_left_out_the_rest_is_built_and_the_command_fails(samples: Newsletter) -> None:
    samples.issue("2021-09", summaries={"01-empathy.md": GOOD_SUMMARY.replace("  - Empathy\n", "  - Empathie\n")})
    result = samples.cli("archive")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "issues/2021-09/01-empathy.md:6: error: unknown topic 'Empathie'; did you mean 'Empathy'?",
        "error: issue 2021-09 is left out of the archive; run `newsletter check 2021-09`",
    ]
    assert result.stdout.startswith("archive of 4 issues ")
    assert not (samples.root / "site" / "2021-09").exists()


def test_cli_no_ready_issue_is_an_error(newsletter: Newsletter) -> None:
    newsletter.issue(meta='---\nsubject: "S"\nstatus: draft\n---\n')
    result = newsletter.cli("archive")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no ready issue to archive: drafts are never published (set status: ready in an issue's issue.md)\n"
    )
    assert not (newsletter.root / "site").exists()


def test_without_its_own_web_templates_the_archive_uses_the_packaged_ones(samples: Newsletter) -> None:
    assert samples.cli("archive").exit_code == 0
    own = (samples.root / "site" / "2021-07" / "index.html").read_text()
    shutil.rmtree(samples.root / "templates" / "web")
    result = samples.cli("archive")
    assert result.exit_code == 0, result.stderr
    assert (samples.root / "site" / "2021-07" / "index.html").read_text() == own


def test_two_summaries_sharing_a_slug_leave_the_issue_out(newsletter: Newsletter) -> None:
    newsletter.issue(
        summaries={
            "01-empathy.md": GOOD_SUMMARY,
            "02-empathy.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", "Other"),
        }
    )
    found = archive.collect(Workspace(load_settings(newsletter.root)))
    assert found.issues == ()
    [skipped] = found.skipped
    assert [p.format(newsletter.root) for p in skipped.problems] == [
        "issues/2030-01/02-empathy.md:1: error: slug 'empathy' is also the slug of 01-empathy.md: "
        "each summary needs its own URL (rename one file)"
    ]


# --- drafts and personal data ---------------------------------------------------------------------


def test_drafts_never_appear(site: Path) -> None:
    assert not (site / "2021-03").exists()
    for path in site.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "2021-03" not in text and DRAFT_TITLE not in text, path


def test_the_archive_shows_no_reader_data(site: Path, samples: Newsletter) -> None:
    addresses = re.findall(r"^([^,@\s]+@[^,\s]+),([^,]*),", (samples.root / "subscribers/sample.csv").read_text(), re.M)
    assert addresses
    for path in site.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not any(token in text for token in TOKENS.values()), path
            assert not re.search(r"\bDear\b|unsubscribe|preferences/\?t=", text, re.I), path
            for email, name in addresses:
                assert email not in text and (not name or name not in text), path


# --- pages ------------------------------------------------------------------------------------------


def test_every_page_is_valid_html5(site: Path) -> None:
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    assert len(pages(site)) == 22
    for path in pages(site):
        text = path.read_text(encoding="utf-8")
        parser.parse(text)  # raises html5lib.html5parser.ParseError on the first error
        tree = lxml.html.fromstring(text.encode())
        ids = tree.xpath("//@id")
        assert len(ids) == len(set(ids)), f"{path}: duplicate ids"
        assert len(tree.xpath("//h1")) == 1, path
        assert tree.xpath("/html/@lang") == ["en"] and tree.findtext(".//title").strip(), path
        assert not tree.xpath("//table"), f"{path}: email tables on the web"


def test_pages_make_no_external_requests(site: Path) -> None:
    for path in pages(site):
        tree = lxml.html.fromstring(path.read_bytes())
        assert not tree.xpath("//*[@src]"), f"{path}: loads something"  # no img, iframe, external script
        assert not tree.xpath("//img|//iframe|//object|//embed|//video|//audio"), path
        for link in tree.xpath("//link"):
            rel = link.get("rel")
            assert rel in {"canonical", "alternate", "icon"}, f"{path}: <link rel={rel}>"  # none is fetched...
            if rel == "icon":
                assert link.get("href") == "data:,"  # ...but an icon would be, so it is empty
        for style in tree.xpath("//style/text()"):
            assert "url(" not in style and "@import" not in style, path
        assert not tree.xpath("//*[@style]"), path


def test_every_link_inside_the_site_resolves(site: Path) -> None:
    ids: dict[str, set[str]] = {}
    for path in pages(site):
        ids[site_path(path, path.name, site)] = set(lxml.html.fromstring(path.read_bytes()).xpath("//@id"))
    checked = 0
    for path in pages(site):
        for href in lxml.html.fromstring(path.read_bytes()).xpath("//a/@href|//link/@href"):
            if re.match(r"^(https?:|mailto:|data:)", href):
                continue
            assert not href.startswith("/"), f"{path}: {href} would break opened from disk or under a folder"
            url, fragment = urldefrag(href)
            target = (path.parent / url).resolve() if url else path
            assert target.is_file(), f"{path}: {href}"
            if fragment:
                assert fragment in ids[site_path(path, url or path.name, site)], f"{path}: {href}"
            checked += 1
    assert checked > 100


def test_home_page_lists_months_newest_first_with_intro_and_titles(site: Path, samples: Newsletter) -> None:
    home = page(site, "")
    months = home.xpath("//section[@class='month']")
    assert [m.findtext(".//h2/a") for m in months] == ["August 2021", "July 2021", "June 2021", "May 2021"]
    ws = Workspace(load_settings(samples.root))
    for month, issue_id in zip(months, READY, strict=False):
        issue = ws.load(issue_id)
        assert issue.intro in month.text_content()
        assert month.xpath(".//ul[@class='titles']/li/a/text()") == [s.title for s in issue.summaries]
        assert month.xpath(".//h2/a/@href") == [f"{issue_id}/index.html"]
    # Without JavaScript the topics are links to their pages; the filter form is hidden until the script runs.
    links = home.xpath("//ul[@id='topic-links']/li/a/@href")
    assert len(links) == 12 and all(re.fullmatch(r"topics/[a-z-]+/index\.html", h) for h in links)
    assert home.xpath("//form[@id='topic-filter']/@hidden") == [""]
    assert home.xpath("//li[@data-topics][a='Patients Crying in Psychotherapy']/@data-topics") == [
        "alliance attachment outcomes client-factors"
    ]


def test_issue_page_is_the_emails_view_in_browser_target_with_the_same_content(site: Path, samples: Newsletter) -> None:
    settings = load_settings(samples.root)
    ws = Workspace(settings)
    issue = ws.load("2021-07")
    # The email's "view in browser" link names the archive's page, and the page is there.
    assert archive.issue_url(settings, "2021-07") == Renderer(settings).view_url(issue) == f"{BASE}/2021-07/"
    doc = page(site, "2021-07/")
    assert doc.xpath("//link[@rel='canonical']/@href") == [f"{BASE}/2021-07/"]
    assert doc.findtext(".//h1") == issue.subject
    text = doc.text_content()
    assert issue.intro in text
    for summary in issue.summaries:
        [article] = doc.xpath(f"//article[@id='{summary.slug}']")
        assert article.findtext("h2/a") == summary.title
        assert article.xpath("h2/a/@href") == [f"{summary.slug}/index.html"]
        assert article.findtext("p[@class='citation']") == summary.citation
        assert article.xpath("p[@class='doi']/a/@href") == [summary.doi_url]
        assert article.xpath(".//section[@class='implications']/h3/text()") == ["Practice Implications"]
        body = " ".join(article.text_content().split())
        for paragraph in (summary.body + "\n\n" + summary.implications).split("\n\n"):
            assert " ".join(paragraph.split()) in body
        assert article.xpath(".//ul[@class='pills']/li/a/text()") == [t.name for t in summary.topics]


def test_the_emails_summary_titles_and_also_this_month_land_on_their_summary_pages(
    site: Path, samples: Newsletter
) -> None:
    settings = load_settings(samples.root)
    issue = Workspace(settings).load("2021-07")
    variant = Renderer(settings).render(issue, ["adverse-effects"])
    doc = lxml.html.fromstring(variant.html)
    shown, left_out = issue.summaries
    [title_link] = doc.xpath(f"//h2[@id='{shown.slug}']/a/@href")
    [also_link] = doc.xpath("//ul[contains(@class, 'nl-also-list')]/li/a/@href")
    assert (title_link, also_link) == (f"{BASE}/2021-07/{shown.slug}/", f"{BASE}/2021-07/{left_out.slug}/")
    for link, summary in ((title_link, shown), (also_link, left_out)):
        landed = page(site, link.removeprefix(BASE + "/"))
        assert landed.findtext(".//h1") == summary.title
        assert landed.xpath("//link[@rel='canonical']/@href") == [link]
    assert f"  {BASE}/2021-07/{left_out.slug}/" in variant.text.splitlines()


def test_summary_page_has_a_stable_url_and_links_back(site: Path) -> None:
    assert archive.summary_url(load_settings(site.parent), "2021-08", "patients-crying") == f"{BASE}/{CRYING}"
    doc = page(site, CRYING)
    assert doc.xpath("//link[@rel='canonical']/@href") == [f"{BASE}/{CRYING}"]
    assert doc.findtext(".//h1") == "Patients Crying in Psychotherapy"
    assert doc.xpath("//p[@class='meta']/a/@href") == ["../index.html#patients-crying"]


def test_summary_page_citation_metadata_for_reference_managers(site: Path) -> None:
    doc = page(site, CRYING)
    meta: dict[str, list[str]] = {}
    for tag in doc.xpath("//meta[starts-with(@name, 'citation_')]"):
        meta.setdefault(tag.get("name"), []).append(tag.get("content"))
    assert meta == {
        "citation_title": [
            "Patients’ crying experiences in psychotherapy and relationship with working alliance, "
            "therapeutic change and attachment styles"
        ],
        "citation_author": [
            "Genova, F.",
            "Zingaretti, P.",
            "Gazzillo, F.",
            "Tanzilli, A.",
            "Lingiardi, V.",
            "Katz, M.",
            "Hilsenroth, M.",
        ],
        "citation_publication_date": ["2021"],
        "citation_journal_title": ["Psychotherapy"],
        "citation_volume": ["58"],
        "citation_issue": ["1"],
        "citation_firstpage": ["160"],
        "citation_lastpage": ["171"],
        "citation_doi": ["10.1037/pst0000339"],
    }
    [script] = doc.xpath("//script[@type='application/ld+json']/text()")
    data = json.loads(script)
    assert data["@context"] == "https://schema.org" and data["@type"] == "ScholarlyArticle"
    assert data["name"] == meta["citation_title"][0]
    assert data["identifier"] == {"@type": "PropertyValue", "propertyID": "DOI", "value": "10.1037/pst0000339"}
    assert data["sameAs"] == "https://doi.org/10.1037/pst0000339"
    assert [a["familyName"] for a in data["author"]] == [a.split(",")[0] for a in meta["citation_author"]]
    assert data["author"][0] == {"@type": "Person", "name": "F. Genova", "familyName": "Genova", "givenName": "F."}
    assert data["datePublished"] == "2021"
    assert data["isPartOf"]["issueNumber"] == "1"
    assert data["isPartOf"]["isPartOf"]["volumeNumber"] == "58"
    assert data["isPartOf"]["isPartOf"]["isPartOf"] == {"@type": "Periodical", "name": "Psychotherapy"}
    assert data["subjectOf"]["url"] == f"{BASE}/{CRYING}"


def test_summary_without_doi_or_volume_still_has_what_the_citation_gives(site: Path) -> None:
    doc = page(site, "2021-06/emotionally-burdened-psychotherapist/")
    names = doc.xpath("//meta[starts-with(@name, 'citation_')]/@name")
    assert "citation_doi" not in names and "citation_volume" not in names
    assert doc.xpath("//meta[@name='citation_journal_title']/@content") == [
        "Professional Psychology: Research and Practice"
    ]
    assert doc.xpath("//meta[@name='citation_author']/@content") == [
        "Nissen-Lie, H. A.",
        "Orlinsky, D. E.",
        "Rønnestad, M. H.",
    ]
    data = json.loads(doc.xpath("//script[@type='application/ld+json']/text()")[0])
    assert "identifier" not in data and "sameAs" not in data
    assert data["isPartOf"] == {"@type": "Periodical", "name": "Professional Psychology: Research and Practice"}


def test_author_text_cannot_break_out_of_the_page(newsletter: Newsletter) -> None:
    evil = '</script><script>alert("x")</script> & <b>'
    newsletter.issue(
        summaries={
            "01-evil.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", evil.replace('"', '\\"'))
            .replace("Empathy and outcome.", "Empathy </script> outcome.")
            .replace("Be empathic.", "<script>alert(1)</script>")
        }
    )
    site = build(newsletter)
    text = (site / "2030-01/evil/index.html").read_text()
    html5lib.HTMLParser(strict=True).parse(text)
    doc = lxml.html.fromstring(text.encode())
    assert len(doc.xpath("//script")) == 1  # the JSON-LD only
    data = json.loads(doc.xpath("//script/text()")[0])
    assert data["name"] == "Empathy </script> outcome"
    assert data["subjectOf"]["headline"] == evil
    assert doc.findtext(".//h1") == evil
    assert "<script>alert(1)</script>" in doc.xpath("string(//section[@class='implications'])")


def test_topic_pages_hold_exactly_the_summaries_with_that_topic(site: Path, samples: Newsletter) -> None:
    expected = expected_topics(samples)
    built = {p.name for p in (site / "topics").iterdir()}
    assert built == set(expected)  # a page per topic in use, none for the others
    ws = Workspace(load_settings(samples.root))
    for slug, paths in expected.items():
        topic_file = site / "topics" / slug / "index.html"
        doc = lxml.html.fromstring(topic_file.read_bytes())
        assert doc.findtext(".//h1") == ws.taxonomy.by_slug(slug).name
        listed = [site_path(topic_file, h, site) for h in doc.xpath("//ol[@class='entries']/li//h2/a/@href")]
        assert sorted(listed) == sorted(paths) and len(listed) == len(paths), slug
        assert listed == sorted(listed, key=lambda p: p[:7], reverse=True), f"{slug}: newest first"


# --- feeds ------------------------------------------------------------------------------------------


def parse_feed(site: Path, path: str) -> ET.Element:
    """Parse a feed back and check the elements Atom requires (RFC 4287), with absolute URLs."""
    root = ET.parse(site / path).getroot()
    assert root.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert (root.findtext(f"{ATOM}{required}") or "").strip(), f"{path}: feed {required}"
    assert root.findtext(f"{ATOM}author/{ATOM}name"), f"{path}: feed author"
    links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
    assert links["self"] == f"{BASE}/{path}"
    for entry in root.findall(f"{ATOM}entry"):
        for required in ("id", "title", "updated", "summary"):
            assert (entry.findtext(f"{ATOM}{required}") or "").strip(), f"{path}: entry {required}"
        [alternate] = [link.get("href") for link in entry.findall(f"{ATOM}link") if link.get("rel") == "alternate"]
        assert alternate.startswith(BASE + "/") and entry.findtext(f"{ATOM}id") == alternate
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", entry.findtext(f"{ATOM}updated"))
    return root


def test_issue_feed_is_valid_atom_with_absolute_urls(site: Path) -> None:
    root = parse_feed(site, "feed.xml")
    assert root.findtext(f"{ATOM}id") == f"{BASE}/"
    assert {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")} == {
        "self": f"{BASE}/feed.xml",
        "alternate": f"{BASE}/",
    }
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}id") for e in entries] == [f"{BASE}/{i}/" for i in READY]
    assert entries[0].findtext(f"{ATOM}title") == "August 2021: Crying in psychotherapy and the working alliance"
    assert entries[0].findtext(f"{ATOM}updated") == "2021-08-01T09:00:00+00:00"
    assert root.findtext(f"{ATOM}updated") == "2021-08-01T09:00:00+00:00"
    content = entries[1].find(f"{ATOM}content")
    assert content.get("type") == "html"
    fragment = lxml.html.fragment_fromstring(content.text, create_parent="div")
    hrefs = fragment.xpath("//a/@href")
    assert f"{BASE}/2021-07/adverse-effects/" in hrefs and f"{BASE}/topics/outcomes/" in hrefs
    assert all(h.startswith(("https://", "http://")) for h in hrefs), "feed readers resolve no relative link"


def test_topic_feeds_are_valid_atom_and_match_their_pages(site: Path, samples: Newsletter) -> None:
    for slug, paths in expected_topics(samples).items():
        root = parse_feed(site, f"topics/{slug}/feed.xml")
        assert root.findtext(f"{ATOM}id") == f"{BASE}/topics/{slug}/"
        ids = [e.findtext(f"{ATOM}id") for e in root.findall(f"{ATOM}entry")]
        assert sorted(ids) == sorted(f"{BASE}/{p}" for p in paths)
    doc = page(site, "topics/outcomes/")
    assert doc.xpath("//link[@type='application/atom+xml']/@href") == ["../../feed.xml", "feed.xml"]


def test_rebuilding_an_unchanged_archive_writes_the_same_bytes(samples: Newsletter, tmp_path: Path) -> None:
    first = build(samples, tmp_path / "one")
    second = build(samples, tmp_path / "two")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


# --- citations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, authors, year, title, journal, volume, issue, pages",
    [
        (
            "Delgadillo, J., Saxon, D., & Barkham, M. (2018). Associations between therapists’ occupational burnout "
            "and their patients’ depression and anxiety treatment outcomes. Depression and Anxiety, 35, 844-850.",
            ["Delgadillo, J.", "Saxon, D.", "Barkham, M."],
            "2018",
            "Associations between therapists’ occupational burnout and their patients’ depression and anxiety treatment "
            "outcomes",
            "Depression and Anxiety",
            "35",
            None,
            "844-850",
        ),
        # A "?" inside the title, and "J.P." written without a space.
        (
            "Moritz, S., Klein, J.P., Peth, J. (2019). It can’t hurt, right? Adverse effects of psychotherapy. "
            "European Archives of Psychiatry and Clinical Neuroscience, 269, 577–586.",
            ["Moritz, S.", "Klein, J. P.", "Peth, J."],
            "2019",
            "It can’t hurt, right? Adverse effects of psychotherapy",
            "European Archives of Psychiatry and Clinical Neuroscience",
            "269",
            None,
            "577–586",
        ),
        # Markdown italics, a trailing DOI URL, a title ending in "?".
        (
            "Smith, A., & Jones, B. (2021b). Does it work? *Psychotherapy, 58*(1), 1–10. https://doi.org/10.1037/x",
            ["Smith, A.", "Jones, B."],
            "2021",
            "Does it work?",
            "Psychotherapy",
            "58",
            "1",
            "1–10",
        ),
        (
            "Nissen-Lie, H. A., & Rønnestad, M. H. (2021). The emotionally burdened psychotherapist: Personal and "
            "situational risk factors. Professional Psychology: Research and Practice. Advance online publication.",
            ["Nissen-Lie, H. A.", "Rønnestad, M. H."],
            "2021",
            "The emotionally burdened psychotherapist: Personal and situational risk factors",
            "Professional Psychology: Research and Practice",
            None,
            None,
            None,
        ),
        # A group author and a book: no journal.
        (
            "American Psychological Association. (2020). Publication manual of the American Psychological Association "
            "(7th ed.). American Psychological Association.",
            ["American Psychological Association"],
            "2020",
            "Publication manual of the American Psychological Association (7th ed.)",
            None,
            None,
            None,
            None,
        ),
        (
            "de Jong, K., van der Berg, T., ... Li, X. (2020, March 3). Feedback. Journal, 2(3-4), e12.",
            ["de Jong, K.", "van der Berg, T.", "Li, X."],
            "2020",
            "Feedback",
            "Journal",
            "2",
            "3-4",
            "e12",
        ),
        ("Smith, A. (in press). A title. Journal.", ["Smith, A."], None, "A title", None, None, None, None),
        ("Not a citation at all", [], None, None, None, None, None, None),
        ("", [], None, None, None, None, None, None),
    ],
)
def test_parse_apa(
    text: str,
    authors: list[str],
    year: str | None,
    title: str | None,
    journal: str | None,
    volume: str | None,
    issue: str | None,
    pages: str | None,
) -> None:
    cited = parse_apa(text)
    assert [a.display for a in cited.authors] == authors
    assert (cited.year, cited.title, cited.journal, cited.volume, cited.issue, cited.pages) == (
        year,
        title,
        journal,
        volume,
        issue,
        pages,
    )


def test_parse_authors_keeps_hyphenated_initials_and_accents() -> None:
    assert parse_authors("Dupont, M.-C., & Åberg, Å.") == (Author("Dupont", "M.-C."), Author("Åberg", "Å."))


# --- citations: properties of the parser ---------------------------------------------------------------
#
# ``parse_apa`` has no catch-all: these say what it does on any text at all, and that a well-formed
# APA reference comes back in exactly the parts it was made of.

# Pieces of references, so that arbitrary text also reaches the parser's deeper branches.
FRAGMENTS = [
    *["(2021).", "(2021a)", "(2020, March 3).", "(n.d.).", "(in press).", "(12345)", "(٢٠٢١)."],
    *["Smith", "J.", "J.P.", "M.-C.", "Å.", ", ", ",", " ", "&", "et al.", "...", "…", ".", "?", "!"],
    *["*", "_", "`", "[x](https://e.org)", "58", "(1)", "(3-4)", "844-850", "577–586", "e12"],
    *["Psychotherapy", "Advance online publication.", "https://doi.org/10.1037/x", "doi: 10.1/y", "\n", "#"],
]
citation_like = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=30).map("".join)


@settings(max_examples=500)
@given(st.text(max_size=300) | citation_like)
def test_parse_apa_returns_only_what_the_text_says(text: str) -> None:
    cited = parse_apa(text)  # never raises: an exception fails the test
    flat = " ".join(plain(text).split())  # the text without Markdown, white space collapsed
    assert cited.text == flat
    for author in cited.authors:
        assert author.family and author.family in flat, author
    for part in (cited.year, cited.title, cited.journal, cited.volume, cited.issue, cited.pages):
        assert part is None or (part and part in flat), part
    assert cited.year is None or re.fullmatch(r"[0-9]{4}", cited.year), cited.year
    assert cited.volume is None or re.fullmatch(r"[0-9]+", cited.volume), cited.volume


UPPER, LOWER = "ABCDEGHJKLMNOPRSTWZÅØÉÇŁ", "abcdeghiklmnoprstuvwyzåøéüçłñ"
word = st.builds(operator.add, st.sampled_from(UPPER), st.text(LOWER, min_size=1, max_size=10))
surname = st.one_of(
    word,
    st.builds("{}-{}".format, word, word),  # Nissen-Lie
    st.builds("{} {}".format, st.sampled_from(["de", "van der", "von"]), word),  # de Jong
    st.builds("O’{}".format, word),
)
initials = st.one_of(
    st.lists(st.sampled_from(UPPER), min_size=1, max_size=3).map(lambda letters: " ".join(f"{c}." for c in letters)),
    st.builds("{}.-{}.".format, st.sampled_from(UPPER), st.sampled_from(UPPER)),  # M.-C.
)
words = st.lists(st.one_of(word, st.text(LOWER, min_size=1, max_size=10)), min_size=1, max_size=8).map(" ".join)


@st.composite
def apa_references(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    """A journal article in APA 7 style, and the parts it was made of."""
    authors = draw(st.lists(st.tuples(surname, initials), min_size=1, max_size=6))
    names = [f"{family}, {given}" for family, given in authors]
    byline = names[0] if len(names) == 1 else f"{', '.join(names[:-1])}, & {names[-1]}"
    year = draw(st.integers(1900, 2099).map(str))
    title = draw(st.builds(operator.add, word, words))
    if draw(st.booleans()):
        title += f": {draw(words)}"  # a subtitle
    ending = draw(st.sampled_from([".", "?"]))  # APA's period is not part of the title; a question mark is
    journal = draw(st.one_of(words, st.builds("{}: {}".format, words, words)).map(str.title))
    volume = str(draw(st.integers(1, 999)))
    issue = draw(st.none() | st.integers(1, 12).map(str) | st.just("3-4"))
    first = draw(st.integers(1, 2000))
    pages = draw(
        st.none()
        | st.just(str(first))
        | st.builds(f"{first}{{}}{{}}".format, st.sampled_from(["-", "–"]), st.integers(first, first + 50))
        | st.just(f"e{first}")
    )
    source = f"{journal}, {volume}" + (f"({issue})" if issue else "")
    if draw(st.booleans()):  # APA italicises the journal and the volume
        source = f"*{journal}, {volume}*" + (f"({issue})" if issue else "")
    text = f"{byline} ({year}). {title}{ending} {source}" + (f", {pages}" if pages else "") + "."
    if draw(st.booleans()):
        text += f" https://doi.org/10.{first}/{draw(st.text(LOWER, min_size=1, max_size=8))}"
    parts = {
        "authors": authors,
        "year": year,
        "title": title + ("?" if ending == "?" else ""),
        "journal": journal,
        "volume": volume,
        "issue": issue,
        "pages": pages,
    }
    return text, parts


@settings(max_examples=500)
@given(apa_references())
def test_a_well_formed_reference_parses_back_to_its_parts(reference: tuple[str, dict[str, object]]) -> None:
    text, parts = reference
    cited = parse_apa(text)
    assert {
        "authors": [(a.family, a.given) for a in cited.authors],
        "year": cited.year,
        "title": cited.title,
        "journal": cited.journal,
        "volume": cited.volume,
        "issue": cited.issue,
        "pages": cited.pages,
    } == parts
