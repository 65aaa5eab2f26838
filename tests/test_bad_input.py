"""Ordinary mistakes in one file never silently lose a reader or block a send (issue 11).

Each test is one case of the issue, on a copy of the sample folder, through the CLI.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import Newsletter

CSV_HEADER = "email,name,topics\n"


def eml_recipients(root: Path, issue: str) -> set[str]:
    folder = root / "outbox" / issue
    found = set()
    for path in folder.glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.add(msg["To"].addresses[0].addr_spec.lower())  # type: ignore[attr-defined]
    return found


def only_readers(samples: Newsletter, text: str) -> None:
    """Replace the sample readers with ``text`` (one file, readers.csv)."""
    for path in (samples.root / "subscribers").glob("*.csv"):
        path.unlink()
    samples.write("subscribers/readers.csv", text)


# -- 1. one malformed CSV row -------------------------------------------------------------------


def test_a_malformed_row_is_named_and_the_rest_of_the_file_is_still_read(samples: Newsletter) -> None:
    only_readers(
        samples,
        CSV_HEADER
        + "r1@example.org,One,all\n"
        + 'r2@example.org,"Two" Jr,all\n'  # a stray quote
        + "r3@example.org,Three,all\n"
        + 'r4@example.org,"Four,all\n'  # an unterminated quote
        + "r5@example.org,Five,all\n"
        + "r6@example.org,"
        + "x" * 140_000
        + ",all\n"  # over the csv module's field limit
        + "r7@example.org,Seven,all\n",
    )
    check = samples.cli("subscribers", "check")
    assert check.exit_code == 1
    assert check.stdout.splitlines() == [
        "subscribers/readers.csv:3: error: malformed CSV: ',' expected after '\"'; row skipped",
        "subscribers/readers.csv:5: error: malformed CSV: field larger than field limit (131072); row skipped",
        "subscribers/readers.csv:7: error: malformed CSV: field larger than field limit (131072); row skipped",
        "4 subscribers (4 active): 3 errors, 0 warnings",
    ]
    sent = samples.cli("send", "2021-07", "--yes")
    assert eml_recipients(samples.root, "2021-07") == {f"r{i}@example.org" for i in (1, 3, 5, 7)}
    assert sent.exit_code == 1, "rows not read fail the run"
    assert re.search(r"subscriber rows not read\s*│\s*3\s*│", sent.stdout), sent.stdout
    assert "not read: subscribers/readers.csv:3: error: malformed CSV" in sent.stdout
    assert "not read: subscribers/readers.csv:7: error: malformed CSV" in sent.stdout


def test_line_separators_inside_a_field_do_not_split_the_row(samples: Newsletter) -> None:
    # A form feed, VT, NEL or U+2028 pasted into a name is part of the name, and line numbers stay true.
    only_readers(
        samples,
        CSV_HEADER + "a@example.org,A\x0cB\x0bC\x85D\u2028E,all\n" + "not-an-address,X,all\n",
    )
    check = samples.cli("subscribers", "check")
    assert check.stdout.splitlines()[0].startswith("subscribers/readers.csv:3: error: invalid address 'not-an-address'")
    assert check.stdout.splitlines()[-1] == "1 subscriber (1 active): 1 error, 0 warnings"


# -- 2. an impossible date in one issue ---------------------------------------------------------


def broken_send_at(samples: Newsletter) -> None:
    samples.issue(
        "2030-04",
        meta='---\nsubject: "Later"\nintro: "x"\nstatus: ready\nsend_at: 2021-02-30T09:00:00+01:00\n---\n',
    )


def test_an_impossible_date_is_a_file_line_error_of_that_issue_only(samples: Newsletter) -> None:
    broken_send_at(samples)
    expected = (
        "issues/2030-04/issue.md:5: error: invalid value in front matter: "
        "send_at: '2021-02-30T09:00:00+01:00' is not valid (day is out of range for month)"
    )
    check = samples.cli("check")
    assert check.exit_code == 1 and expected in check.stdout.splitlines()
    assert "Traceback" not in check.stdout + check.stderr
    listed = samples.cli("issues")
    assert listed.exit_code == 0 and "2021-07" in listed.stdout
    archive = samples.cli("archive")
    assert archive.exit_code == 1 and expected in archive.stderr.splitlines()
    assert (samples.root / "site" / "2021-07" / "index.html").is_file()  # the others are archived
    upcoming = samples.cli("schedule", "--next")
    assert upcoming.exit_code == 0 and "Traceback" not in upcoming.stderr


def test_the_scheduled_run_sends_the_month_and_names_the_broken_issue(samples: Newsletter) -> None:
    broken_send_at(samples)
    samples.write(".env", "NEWSLETTER_TIMEZONE=UTC\n")
    month = time.strftime("%Y-%m", time.gmtime())
    samples.issue(month)  # this month's issue, ready
    run = samples.cli("schedule", "--run-now")
    assert f"{month} " in run.stdout and "sent via outbox" in run.stdout
    assert "Cannot be scheduled until fixed (`newsletter check`):" in run.stdout
    assert "  issues/2030-04/issue.md:5: error: invalid value in front matter: send_at:" in run.stdout


# -- 8. control characters from pasted PDF text ------------------------------------------------


def test_control_characters_are_replaced_with_a_warning_and_feeds_stay_wellformed(samples: Newsletter) -> None:
    path = samples.root / "issues" / "2021-07" / "01-adverse-effects.md"
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    title = next(i for i, line in enumerate(lines) if line.startswith("title:"))
    lines[title] = lines[title].replace("Effects", "Eff\x0cects\x02")
    body = len(lines) - 3
    lines[body] += " \x0b\x1f\ufffe"
    path.write_text("\n".join(lines), encoding="utf-8")
    check = samples.cli("check", "2021-07")
    assert check.exit_code == 0, check.stdout
    assert (
        f"issues/2021-07/01-adverse-effects.md:{title + 1}: warning: control character(s) U+0002, U+000C replaced by spaces"
        in check.stdout
    )
    assert (
        f"issues/2021-07/01-adverse-effects.md:{body + 1}: warning: control character(s) U+000B, U+001F, U+FFFE replaced by spaces"
        in check.stdout
    )
    assert samples.cli("build", "2021-07").exit_code == 0
    assert samples.cli("archive").exit_code == 0
    feeds = list((samples.root / "site").rglob("feed.xml"))
    assert feeds
    for feed in feeds:
        ET.parse(feed)  # raises on ill-formed XML
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0


# -- 9. a YAML alias bomb ------------------------------------------------------------------------


def test_yaml_aliases_are_refused_fast_and_small(samples: Newsletter) -> None:
    levels = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for n in range(1, 9):
        levels.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    bomb = "---\ntitle: Bomb\n" + "\n".join(levels) + "\ntopics: *a8\n---\nBody.\n\n## Practice Implications\n\nNone.\n"
    samples.write("issues/2021-07/03-bomb.md", bomb)
    started = time.monotonic()
    check = samples.cli("check", "2021-07")
    assert time.monotonic() - started < 10  # the unguarded parse took 13 s and 1.95 GB, then died
    assert check.exit_code == 1
    assert (
        "issues/2021-07/03-bomb.md:4: error: invalid value in front matter: YAML aliases (*name) are not allowed"
        in check.stdout
    )
