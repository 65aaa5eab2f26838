"""Loading issue sources and every problem ``check`` reports, with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.content.checks import check_folder
from newsletter.content.loader import load_issue
from newsletter.errors import ContentError

from conftest import GOOD_SUMMARY, REPO, TAXONOMY, Newsletter


def problems_of(folder: Path) -> list[str]:
    return [p.format(folder.parent.parent) for p in check_folder(folder, TAXONOMY).problems]


def only(lines: list[str], needle: str) -> str:
    hits = [line for line in lines if needle in line]
    assert len(hits) == 1, f"expected one line with {needle!r} in {lines}"
    return hits[0]


def test_good_issue_loads_with_every_field(newsletter: Newsletter) -> None:
    folder = newsletter.issue()
    assert problems_of(folder) == []
    issue = load_issue(folder, TAXONOMY)
    assert issue.id == "2030-01" and issue.status == "ready" and issue.subject == "Empathy and burnout"
    first = issue.summaries[0]
    assert [s.slug for s in issue.summaries] == ["empathy", "burnout"]
    assert [t.slug for t in first.topics] == ["empathy", "therapist-factors"]
    assert first.doi_url == "https://doi.org/10.1037/pst0000001"
    assert first.body == "Smith and colleagues studied *empathy* in 120 therapists."
    assert first.implications == "Be empathic."
    assert first.body_line == 9 and first.implications_line == 13


def test_taxonomy_matches_name_slug_alias_any_case() -> None:
    assert TAXONOMY.get("ADHERANCE").slug == "adherence"
    assert TAXONOMY.get("Adherence").name == "Adherence"
    assert TAXONOMY.get("trauma and/or ptsd").slug == "trauma"
    assert TAXONOMY.get("cbt").slug == "cbt"
    assert TAXONOMY.get("all") is None  # a preference, not a topic
    assert len(TAXONOMY) == 36


def summary_with(**replace: str) -> str:
    text = GOOD_SUMMARY
    for old, new in replace.items():
        text = text.replace(old.replace("_", " "), new)
    return text


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            GOOD_SUMMARY.replace('title: "Therapist Empathy and Outcome"\n', ""),
            1,
            "error: required field 'title' is missing",
        ),
        (GOOD_SUMMARY.replace('"Therapist Empathy and Outcome"', '""'), 2, "error: required field 'title' is empty"),
        (
            GOOD_SUMMARY.replace("  - Empathy\n", "  - Empaty\n"),
            6,
            "error: unknown topic 'Empaty'; did you mean 'Empathy'?",
        ),
        (
            GOOD_SUMMARY.replace("  - Empathy\n  - therapist factors\n", "").replace("topics:", "topics: []"),
            5,
            "error: required field 'topics' is empty",
        ),
        (
            GOOD_SUMMARY.replace("## Practice Implications", "## Implications"),
            9,
            "error: no Practice Implications section",
        ),
        (GOOD_SUMMARY.replace("\nBe empathic.\n", "\n"), 11, "error: the Practice Implications section is empty"),
        (
            GOOD_SUMMARY.replace("Smith and colleagues studied *empathy* in 120 therapists.\n", ""),
            9,
            "error: empty body",
        ),
        (GOOD_SUMMARY.replace('title: "Therapist', 'title: "Therapist: "'), 2, "error: invalid YAML in front matter"),
        # PyYAML's wording, though libyaml parses first (sources.FAST_LOADER): one message either way.
        (
            GOOD_SUMMARY.replace("topics:\n", "topics: [Empathy\nx:\n"),
            6,
            "error: invalid YAML in front matter: expected ',' or ']', but got ':'",
        ),
        (GOOD_SUMMARY.replace("---\ntitle", "title", 1), 1, "error: missing front matter"),
        (
            GOOD_SUMMARY.replace('doi: "10.1037/pst0000001"', 'doi: "pst0000001"'),
            4,
            "error: doi 'pst0000001' is not a DOI",
        ),
        (
            GOOD_SUMMARY.replace('doi: "10.1037/pst0000001"', 'url: "www.example.org"'),
            4,
            "error: url 'www.example.org' must be an absolute http(s) URL",
        ),
        (
            GOOD_SUMMARY.replace("Smith and colleagues", "Smyth and colleagues"),
            9,
            "warning: 'Smyth and colleagues' does not match the first author 'Smith'",
        ),
        (GOOD_SUMMARY.replace("(2021)", "2021"), 3, "warning: citation has no year in parentheses"),
        (GOOD_SUMMARY.replace('doi: "10.1037/pst0000001"\n', ""), 2, "warning: no doi or url"),
        (
            GOOD_SUMMARY.replace("topics:", "topic:"),
            5,
            "warning: unknown field 'topic' is ignored; did you mean 'topics'?",
        ),
        ("", 1, "error: file is empty"),
        (b"---\ntitle: caf\xe9\n---\n", 2, "error: is not valid UTF-8 (byte 0xe9)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", 3, "error: is a binary file"),
    ],
)
def test_each_summary_problem_names_file_line_and_cause(
    newsletter: Newsletter, text: str | bytes, line: int, words: str
) -> None:
    folder = newsletter.issue(
        summaries={"01-empathy.md": text, "02-other.md": GOOD_SUMMARY.replace("Therapist Empathy", "Other")}
    )
    lines = problems_of(folder)
    assert only(lines, words).startswith(f"issues/2030-01/01-empathy.md:{line}: ")


def test_issue_level_problems(newsletter: Newsletter) -> None:
    folder = newsletter.issue(
        meta='---\nsubject: ""\nstatus: sent\nsend_at: "next tuesday"\n---\n',
        summaries={"01-a.md": GOOD_SUMMARY, "02-b.md": GOOD_SUMMARY, "notes.md": "x"},
    )
    lines = problems_of(folder)
    assert (
        only(lines, "required field 'subject'") == "issues/2030-01/issue.md:2: error: required field 'subject' is empty"
    )
    assert only(lines, "status") == "issues/2030-01/issue.md:3: error: status 'sent' must be 'draft' or 'ready'"
    assert only(lines, "send_at").startswith(
        "issues/2030-01/issue.md:4: error: send_at 'next tuesday' is not an ISO date-time"
    )
    assert only(lines, "duplicate title") == (
        "issues/2030-01/02-b.md:2: error: duplicate title 'Therapist Empathy and Outcome': 01-a.md has the same one"
    )
    assert only(lines, "notes.md").endswith(
        "warning: ignored: summary files are named NN-slug.md, e.g. 01-crying-in-therapy.md"
    )
    assert only(lines, "no intro").startswith("issues/2030-01/issue.md:1: warning:")


def test_summary_count_and_empty_issue(newsletter: Newsletter) -> None:
    one = newsletter.issue("2030-02", summaries={"01-a.md": GOOD_SUMMARY})
    assert (
        only(problems_of(one), "1 summary:")
        == "issues/2030-02/issue.md:1: warning: 1 summary: an issue usually has two or three"
    )
    empty = newsletter.issue("2030-03", summaries={})
    assert (
        only(problems_of(empty), "no summaries")
        == "issues/2030-03:1: error: issue has no summaries: add files named NN-slug.md"
    )


def test_missing_issue_md_and_directory_in_place_of_file(newsletter: Newsletter) -> None:
    folder = newsletter.issue()
    (folder / "issue.md").unlink()
    (folder / "issue.md").mkdir()
    (folder / "03-dir.md").mkdir()
    lines = problems_of(folder)
    assert "issues/2030-01/issue.md:1: error: is a directory, expected a file" in lines
    assert "issues/2030-01/03-dir.md:1: error: is a directory, expected a file" in lines
    (folder / "issue.md").rmdir()
    assert "issues/2030-01/issue.md:1: error: missing issue.md (subject, intro and status of the issue)" in problems_of(
        folder
    )


def test_send_at_accepts_iso_datetime(newsletter: Newsletter) -> None:
    folder = newsletter.issue(
        meta="---\nsubject: S\nintro: I.\nstatus: ready\nsend_at: 2030-01-03T08:30:00+01:00\n---\n"
    )
    issue = load_issue(folder, TAXONOMY)
    assert issue.send_at is not None and issue.send_at.isoformat() == "2030-01-03T08:30:00+01:00"


def test_load_issue_refuses_errors(newsletter: Newsletter) -> None:
    folder = newsletter.issue(summaries={"01-a.md": GOOD_SUMMARY.replace("Empathy\n", "Nope\n", 1)})
    with pytest.raises(ContentError) as caught:
        load_issue(folder, TAXONOMY)
    assert any("unknown topic 'Nope'" in p.message for p in caught.value.problems)


def test_every_shipped_sample_passes_check_or_fails_only_for_what_a_draft_lacks() -> None:
    folders = sorted(p for p in (REPO / "issues").iterdir() if p.is_dir())
    assert [f.name for f in folders] == ["2021-03", "2021-05", "2021-06", "2021-07", "2021-08"]
    for folder in folders:
        issue_problems = check_folder(folder, TAXONOMY).problems
        errors = [p for p in issue_problems if p.severity == "error"]
        if folder.name == "2021-03":
            assert load_issue.__name__ and [p.message for p in errors] == ["required field 'citation' is missing"]
        else:
            assert errors == [], folder
    july = [p.message for p in check_folder(REPO / "issues" / "2021-07", TAXONOMY).problems]
    assert "'Dalgillo and colleagues' does not match the first author 'Delgadillo' of the citation" in july


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: ("---\n" + t).encode("utf-8", "surrogatepass"))
)
def test_arbitrary_bytes_in_a_summary_give_problems_not_crashes(newsletter: Newsletter, data: bytes) -> None:
    folder = newsletter.issue(summaries={"01-fuzz.md": data, "02-ok.md": GOOD_SUMMARY})
    problems = check_folder(folder, TAXONOMY).problems
    for problem in problems:
        assert problem.line >= 1 and problem.message
