"""``newsletter build`` and the size checks of ``newsletter check``, through the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from lxml import html as lxml_html

from newsletter.content.workspace import Workspace
from newsletter.render.renderer import Renderer, fill_sample
from newsletter.render.sizes import size_of
from newsletter.settings import load_settings

from conftest import GOOD_SUMMARY, Newsletter

WIDE = {"COLUMNS": "200"}
VARIANT_FILES = {"all.html", "all.txt", "01.html", "01.txt", "02.html", "02.txt"}


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The rich table's rows, by file name."""
    return {
        cells[0]: cells[1:]
        for line in stdout.splitlines()
        if line.startswith("│")
        for cells in [[c.strip() for c in line.strip("│").split("│")]]
    }


def test_build_writes_every_variant_an_index_and_a_size_table(samples: Newsletter, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = samples.cli("build", "2021-07", "--out", str(out), env=WIDE)
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in out.iterdir()} == VARIANT_FILES | {"index.html", ".newsletter-build"}
    rows = table_rows(result.stdout)
    assert set(rows) == VARIANT_FILES
    for name in VARIANT_FILES:
        size = len((out / name).read_bytes())
        assert rows[name][0] == f"{size / 1024:.1f} KB"
        if name.endswith(".html"):
            assert rows[name][1] == f"{size / (102 * 1024):.0%}" and rows[name][2] == "ok"
    assert "2021-07: 3 variants" in result.stdout
    assert result.stdout.rstrip().endswith(f"open {out / 'index.html'}")
    index = lxml_html.parse(str(out / "index.html")).getroot()
    assert {a.get("href") for a in index.iter("a")} == VARIANT_FILES
    assert "Psychotherapist burnout affects patient outcomes" in index.text_content()
    # Filled for a sample reader: a build is for looking at.
    page = (out / "01.html").read_text(encoding="utf-8")
    assert "__nl_" not in page and "Dear reader," in " ".join(lxml_html.fromstring(page).text_content().split())
    assert "Also this month" in page and "Also this month" not in (out / "all.html").read_text(encoding="utf-8")


def test_build_defaults_to_build_folder_and_replaces_the_previous_build(samples: Newsletter) -> None:
    assert samples.cli("build", "2021-07").exit_code == 0
    target = samples.root / "build" / "2021-07"
    (target / "stale.html").write_text("old", encoding="utf-8")
    assert samples.cli("build", "2021-07").exit_code == 0
    assert {p.name for p in target.iterdir()} == VARIANT_FILES | {"index.html", ".newsletter-build"}
    assert [p.name for p in target.parent.iterdir()] == ["2021-07"]  # no staging folder left behind


def test_build_refuses_to_replace_a_folder_it_did_not_write(samples: Newsletter, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "drafts").mkdir(parents=True)
    (mine / "notes.md").write_text("mine", encoding="utf-8")
    result = samples.cli("build", "2021-07", "--out", str(mine))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: refusing to replace {mine}: it holds files a build did not write "
        "(drafts, notes.md); choose another --out folder\n"
    )
    assert (mine / "notes.md").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "samples"]  # nothing staged


def test_build_refuses_an_issue_with_errors(samples: Newsletter) -> None:
    result = samples.cli("build", "2021-03")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "issues/2021-03/01-how-much-psychotherapy.md:1: error: required field 'citation' is missing",
        "error: issue 2021-03 has errors; nothing was built",
    ]
    assert not (samples.root / "build").exists()


def test_build_allows_a_draft_and_marks_it(newsletter: Newsletter) -> None:
    newsletter.issue(meta='---\nsubject: "S"\nintro: "I."\nstatus: draft\n---\n')
    result = newsletter.cli("build", "2030-01")
    assert result.exit_code == 0, result.stderr
    page = (newsletter.root / "build" / "2030-01" / "all.html").read_text(encoding="utf-8")
    assert "DRAFT: not yet ready to send" in page


def test_build_unknown_issue_is_a_clean_error(newsletter: Newsletter) -> None:
    result = newsletter.cli("build", "2030-13")
    assert result.exit_code == 1 and result.stderr.startswith("error: no issue '2030-13'")


# --- size checks ---------------------------------------------------------------------


def _issue_of_size(nl: Newsletter, target: int) -> None:
    """A synthetic issue whose full-issue HTML is ``target`` bytes, give or take a few."""

    def write(padding: int) -> None:
        body = ("word " * (padding // 5)).strip() if padding else "Short."
        nl.issue(
            summaries={
                "01-a.md": GOOD_SUMMARY.replace("Be empathic.", body),
                "02-b.md": GOOD_SUMMARY.replace("Therapist Empathy", "Burnout"),
            }
        )

    def measure() -> int:
        ws = Workspace(load_settings(nl.root))
        renderer = Renderer(ws.settings)
        return size_of(fill_sample(renderer.render(ws.load("2030-01")), ws.settings.base_url)[0])

    write(0)
    write(target - measure())  # Markdown text is copied into the HTML byte for byte


def test_check_warns_over_80_kb(newsletter: Newsletter) -> None:
    _issue_of_size(newsletter, 90 * 1024)
    result = newsletter.cli("check", "2030-01")
    assert result.exit_code == 0
    assert re.fullmatch(
        r"issues/2030-01/issue\.md:1: warning: the full issue is (89|90)\.\d KB of HTML, "
        r"close to Gmail's 102 KB clipping limit",
        result.stdout.splitlines()[0],
    )
    assert result.stdout.splitlines()[-1] == "issue 2030-01 checked: 0 errors, 1 warning — ok"


def test_check_fails_over_gmails_102_kb_and_build_still_shows_it(newsletter: Newsletter) -> None:
    _issue_of_size(newsletter, 120 * 1024)
    result = newsletter.cli("check", "2030-01")
    assert result.exit_code == 1
    assert re.fullmatch(
        r"issues/2030-01/issue\.md:1: error: the full issue is 1[12]\d\.\d KB of HTML: Gmail clips "
        r"email over 102 KB, hiding the rest and the unsubscribe link; shorten or split the issue",
        result.stdout.splitlines()[0],
    )
    assert result.stdout.splitlines()[-1] == "issue 2030-01 checked: 1 error, 0 warnings — FAILED"
    built = newsletter.cli("build", "2030-01", env=WIDE)
    assert built.exit_code == 0
    rows = table_rows(built.stdout)
    assert rows["all.html"][2] == "clipped" and rows["02.html"][2] == "ok"
    assert "warning: some variants are over 102 KB: Gmail will clip them" in built.stderr


def test_check_skips_sizes_of_an_issue_that_does_not_load(newsletter: Newsletter) -> None:
    newsletter.issue(
        summaries={
            "01-a.md": GOOD_SUMMARY.replace("Empathy\n", "Nope\n", 1) + "word " * 30000,
            "02-b.md": GOOD_SUMMARY.replace("Therapist Empathy", "B"),
        }
    )
    result = newsletter.cli("check", "2030-01")
    assert result.exit_code == 1
    assert "KB of HTML" not in result.stdout and "unknown topic 'Nope'" in result.stdout


def test_check_warns_about_links_that_go_nowhere_from_an_inbox(newsletter: Newsletter) -> None:
    newsletter.issue(
        summaries={
            "01-a.md": GOOD_SUMMARY.replace("Be empathic.", "See [our page](/about)."),
            "02-b.md": GOOD_SUMMARY.replace("Therapist Empathy", "B"),
        }
    )
    result = newsletter.cli("check", "2030-01")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == (
        "issues/2030-01/01-a.md:13: warning: link '/about' is not an absolute "
        "http(s) or mailto URL: the email shows its text without a link"
    )
