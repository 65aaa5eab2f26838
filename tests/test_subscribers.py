"""Subscriber files: validation with file:line, and the personalisation rule."""

from __future__ import annotations

import pytest
from email_validator import validate_email
from hypothesis import given
from hypothesis import strategies as st

from newsletter.audience.choices import topics_text
from newsletter.audience.personalise import NO_MATCH, Routes
from newsletter.audience.subscribers import normalize_email, read_subscribers, text_lines
from newsletter.content.loader import load_issue
from newsletter.content.sources import read_text
from newsletter.content.workspace import Workspace
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.send import plan
from newsletter.settings import load_settings

from conftest import GOOD_SUMMARY, REPO, SUBSCRIBERS_HEADER, TAXONOMY, Newsletter


def check(newsletter: Newsletter, **files: str) -> list[str]:
    for name, text in files.items():
        newsletter.write(f"subscribers/{name}.csv", text)
    found = read_subscribers(newsletter.root / "subscribers", TAXONOMY)
    return [p.format(newsletter.root) for p in found.problems]


def test_sample_subscribers_are_clean() -> None:
    found = read_subscribers(REPO / "subscribers", TAXONOMY)
    assert found.problems == []
    assert len(found.subscribers) >= 10
    assert {s.status for s in found.subscribers} == {"active", "unsubscribed", "bounced"}
    assert any(s.topics is None for s in found.subscribers)


def test_every_row_problem_is_reported_with_line(newsletter: Newsletter) -> None:
    lines = check(
        newsletter,
        a=SUBSCRIBERS_HEADER
        + (
            "ok@example.org,Ok,empathy,\n"
            "not-an-address,X,empathy,\n"
            "t@example.org,T,Empaty,\n"
            "e@example.org,E,,\n"
            "OK@Example.org,Dup,all,\n"
            "s@example.org,S,all,paused\n"
            "w@example.org,W,empathy;zzqx,active\n"
            "short@example.org,Short\n"
        ),
        b=SUBSCRIBERS_HEADER + "ok@EXAMPLE.ORG,Again,all,\n",
    )
    assert lines == [
        "subscribers/a.csv:3: error: invalid address 'not-an-address': An email address must have an @-sign.",
        "subscribers/a.csv:4: error: unknown topic 'Empaty'; did you mean 'Empathy'?",
        "subscribers/a.csv:5: error: empty topics: list topics separated by ';' or write 'all'",
        "subscribers/a.csv:6: error: duplicate address OK@example.org: already on line 2; row skipped",
        "subscribers/a.csv:7: error: unknown status 'paused'; expected one of active, unsubscribed, bounced",
        "subscribers/a.csv:8: warning: ignored unknown topic 'zzqx' (see `newsletter topics`)",
        "subscribers/a.csv:9: error: malformed CSV: 2 fields, header has 4; row skipped",
        "subscribers/b.csv:2: error: duplicate address ok@example.org: already on subscribers/a.csv:2; row skipped",
    ]


def test_bom_and_missing_columns(newsletter: Newsletter) -> None:
    assert check(newsletter, a="\ufeff" + SUBSCRIBERS_HEADER + "a@example.org,A,all,\n") == []
    assert check(newsletter, b="mail,name\nx@example.org,X\n") == [
        "subscribers/b.csv:1: error: malformed CSV: header lacks column(s) email, topics; expected email,name,topics[,status]"
    ]


def test_cli_subscribers_check_and_list(samples: Newsletter) -> None:
    result = samples.cli("subscribers", "check")
    assert result.exit_code == 0
    assert result.stdout == "12 subscribers (10 active): 0 errors, 0 warnings\n"
    listed = samples.cli("subscribers", "list", "--topic", "empathy", env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    assert "chloe.martin@example.org" in listed.stdout and "ben.okafor@example.org" not in listed.stdout
    assert "ana.silva@example.org" in listed.stdout  # 'all' readers get every topic


@given(
    st.from_regex(
        r"[a-z0-9]{1,10}(\.[a-z0-9_+-]{1,8}){0,2}@[a-z0-9]{1,10}(-[a-z0-9]{1,5})?\.[a-z]{2,6}", fullmatch=True
    )
)
def test_fast_path_agrees_with_email_validator(address: str) -> None:
    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except Exception:
        with pytest.raises(ValueError):  # refused by email-validator: the fast path must refuse it too
            normalize_email(address)
        return
    assert normalize_email(address) == expected


def test_personalisation_rule(newsletter: Newsletter) -> None:
    folder = newsletter.issue(
        summaries={
            "01-empathy.md": GOOD_SUMMARY,  # Empathy, Therapist Factors
            "02-trauma.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", "Trauma").replace(
                "  - Empathy\n  - therapist factors\n", "  - Trauma and/or PTSD\n"
            ),
            "03-both.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", "Both").replace(
                "  - Empathy\n", "  - PTSD\n"
            ),
        }
    )
    issue = load_issue(folder, TAXONOMY)
    newsletter.subscribers(
        "all@example.org,All,all,\n"
        "emp@example.org,Emp,empathy,\n"
        "tra@example.org,Tra,ptsd,\n"
        "none@example.org,None,Placebo Effect,\n"
        "gone@example.org,Gone,all,unsubscribed\n"
        "bad@example.org,Bad,all,bounced\n"
        "emp2@example.org,Emp2,EMPATHY;Therapist Factors,\n",
        name="r",
    )
    readers = read_subscribers(newsletter.root / "subscribers", TAXONOMY).subscribers
    routes = Routes(issue)
    routed = {r.email: routes.route(topics_text(r.topics), r.status, None) for r in readers}
    assert routed == {
        "all@example.org": ("empathy", "trauma", "both"),
        "emp@example.org": ("empathy",),
        "tra@example.org": ("trauma", "both"),
        "none@example.org": NO_MATCH,
        "gone@example.org": "unsubscribed",
        "bad@example.org": "bounced",
        "emp2@example.org": ("empathy", "both"),
    }
    assert Routes(issue, send_unmatched=True).route("placebo-effect", "active", None) == ("empathy", "trauma", "both")
    assert routes.route("all", "active", "bounced at SendGrid") == "bounced at SendGrid"
    # The plan: the same rule over the database's counts, the full issue first, then larger selections.
    ws = Workspace(load_settings(newsletter.root))
    with Ledger(ws.settings.ledger_url) as ledger:
        audience, problems = plan(ws, issue, engine=ledger.engine)
    assert problems == []
    assert list(audience.groups.items()) == [
        (("empathy", "trauma", "both"), 1),
        (("empathy", "both"), 1),
        (("trauma", "both"), 1),
        (("empathy",), 1),
    ]
    assert audience.skipped == {NO_MATCH: 1, "unsubscribed": 1, "bounced": 1}


# -- the files read a line at a time ---------------------------------------------------------

PIECES = ["a", ",", '"', " ", "\n", "\r", "\r\n", "\x0c", "\x0b", "\u2028", "\x85", "é", "\ufeff"]


@given(st.lists(st.sampled_from(PIECES), max_size=40), st.booleans())
def test_a_file_streamed_splits_into_the_lines_of_its_whole_text(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[str], bom: bool
) -> None:
    path = tmp_path_factory.mktemp("lines") / "a.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "".join(pieces).encode("utf-8"))
    text, problem = read_text(path)
    assert problem is None and text is not None
    # As the whole text was split before: at "\n" only once "\r\n" and "\r" became "\n".
    whole = [line + "\n" for line in text.split("\n")]
    if whole[-1] == "\n":
        whole.pop()
    assert list(text_lines(path)) == whole


def test_a_cr_lf_across_read_buffers_ends_one_line(newsletter: Newsletter) -> None:
    rows = "".join(f"r{i}@example.org,R {i},all,\r\n" for i in range(5000))  # ~125 kB: many reads
    path = newsletter.write("subscribers/a.csv", (SUBSCRIBERS_HEADER + rows).encode())
    assert len(list(text_lines(path))) == 5001
    found = read_subscribers(path.parent, TAXONOMY)
    assert found.problems == [] and [s.line for s in found.subscribers] == list(range(2, 5002))


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (b"\xe9", "subscribers/a.csv:{line}: error: is not valid UTF-8 (byte 0xe9); save it as UTF-8"),
        (b"\x00", "subscribers/a.csv:{line}: error: is a binary file, expected UTF-8 text"),
        (b"\xc3", "subscribers/a.csv:{line}: error: is not valid UTF-8 (byte 0xc3); save it as UTF-8"),  # cut short
    ],
)
def test_a_bad_byte_past_the_first_megabyte_still_gives_no_reader_of_that_file(
    newsletter: Newsletter, bad: bytes, expected: str
) -> None:
    rows = "".join(f"r{i}@example.org,R {i},all,\n" for i in range(60_000))  # ~1.5 MB
    newsletter.write("subscribers/a.csv", (SUBSCRIBERS_HEADER + rows).encode() + b"x" + bad)
    newsletter.write("subscribers/b.csv", SUBSCRIBERS_HEADER + "b@example.org,B,all,\n")
    found = read_subscribers(newsletter.root / "subscribers", TAXONOMY)
    assert [p.format(newsletter.root) for p in found.problems] == [expected.format(line=60_002)]
    assert [s.email for s in found.subscribers] == ["b@example.org"]
