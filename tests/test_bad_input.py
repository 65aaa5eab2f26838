"""Ordinary mistakes in one file never silently lose a reader or block a send (issue 11).

Each test is one case of the issue, on a copy of the sample folder, through the CLI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from conftest import Newsletter, read_eml
from fake_sendgrid import FakeSendGrid

CSV_HEADER = "email,name,topics\n"


def eml_recipients(samples: Newsletter, issue: str) -> set[str]:
    return {read_eml(path)["To"].addresses[0].addr_spec.lower() for path in samples.outbox(issue)}


def only_readers(samples: Newsletter, text: str) -> None:
    """Replace the sample readers with ``text`` (one file, readers.csv, with its own header)."""
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
    assert eml_recipients(samples, "2021-07") == {f"r{i}@example.org" for i in (1, 3, 5, 7)}
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


# -- 3. internationalised addresses --------------------------------------------------------------


def test_internationalised_addresses_reach_the_outbox_and_an_idn_is_one_reader(samples: Newsletter) -> None:
    only_readers(
        samples,
        CSV_HEADER
        + "jose@bücher.example,José,all\n"
        + "JOSE@xn--bcher-kva.example,José again,all\n"  # the same reader, punycode and another case
        + "ünicode@example.org,Ünicode,all\n"
        + "plain@example.org,Plain,all\n",
    )
    check = samples.cli("subscribers", "check")
    assert (
        "subscribers/readers.csv:3: error: duplicate address JOSE@xn--bcher-kva.example: already on line 2"
        in check.stdout
    )
    sent = samples.cli("send", "2021-07", "--yes")
    assert "UnicodeEncodeError" not in sent.stdout + sent.stderr
    assert eml_recipients(samples, "2021-07") == {
        "jose@xn--bcher-kva.example",
        "ünicode@example.org",
        "plain@example.org",
    }
    for path in (samples.root / "outbox" / "2021-07").glob("*.eml"):
        msg = read_eml(path)
        assert msg.defects == [] and msg.get_body(("plain",)) is not None


# -- 5. build --out never deletes a user's files ----------------------------------------------


def test_build_refuses_a_folder_of_someone_elses_html_and_text(samples: Newsletter) -> None:
    mine = samples.root / "Documents"
    mine.mkdir()
    (mine / "thesis-draft.txt").write_text("years of work")
    (mine / "homepage.html").write_text("<p>hi</p>")
    result = samples.cli("build", "2021-07", "--out", str(mine))
    assert result.exit_code == 1 and "refusing to replace" in result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["homepage.html", "thesis-draft.txt"]
    empty = samples.root / "fresh"
    assert samples.cli("build", "2021-07", "--out", str(empty)).exit_code == 0
    assert samples.cli("build", "2021-07", "--out", str(empty)).exit_code == 0  # its own build: replaced


# -- 6. a full disk ------------------------------------------------------------------------------


def test_a_full_outbox_leaves_no_temporary_files_and_the_rerun_recovers(samples: Newsletter, tmp_path: Path) -> None:
    readers = "".join(f"r{i}@example.org,Reader {i},all\n" for i in range(60))
    only_readers(samples, CSV_HEADER + readers)
    outbox = samples.root / "outbox"
    outbox.mkdir()
    # A 600 KB file system of our own, in a user and mount namespace (no root needed): room for some messages.
    script = f"""
set -u
mount -t tmpfs -o size=600k tmpfs {outbox}
"{sys.executable}" -m newsletter --root {samples.root} send 2021-07 --yes >/dev/null 2>&1; echo "first=$?"
echo "temps=$(find {outbox} -name '.*.tmp' | wc -l) files=$(find {outbox} -name '*.eml' | wc -l)"
mount -o remount,size=50m {outbox}
"{sys.executable}" -m newsletter --root {samples.root} send 2021-07 --yes >/dev/null 2>&1; echo "second=$?"
echo "temps=$(find {outbox} -name '.*.tmp' | wc -l) files=$(find {outbox} -name '*.eml' | wc -l)"
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = done.stdout.split()
    assert done.returncode == 0, done.stderr
    first_files = int(lines[2].split("=")[1])
    assert lines[0] == "first=1" and lines[1] == "temps=0" and first_files < 60, done.stdout
    assert lines[3:] == ["second=0", "temps=0", "files=60"], done.stdout


# -- 7. losing the ledger ------------------------------------------------------------------------


def test_after_losing_the_ledger_the_outbox_knows_who_has_the_issue(samples: Newsletter) -> None:
    first = samples.cli("send", "2021-07", "--yes")
    assert first.exit_code == 0
    before = {p.name: p.read_bytes() for p in (samples.root / "outbox" / "2021-07").glob("*.eml")}
    shutil.rmtree(samples.root / "state")
    again = samples.cli("send", "2021-07", "--yes")
    assert again.exit_code == 0, again.stdout
    assert "already in the outbox" not in again.stdout
    after = {p.name: p.read_bytes() for p in (samples.root / "outbox" / "2021-07").glob("*.eml")}
    assert after == before  # nothing written twice, nothing lost
    status = samples.cli("status", "2021-07")
    assert re.search(rf"sent\s*│\s*{len(before)}\s*│", status.stdout), status.stdout


# -- 3 and 4 through SendGrid: one reader's data is that reader's problem -----------------------


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    server = FakeSendGrid().start()
    yield server
    server.stop()


def sendgrid_env(fake: FakeSendGrid) -> dict[str, str]:
    return fake.settings(SENDGRID_BACKOFF="0.01")


def test_a_long_name_or_an_smtputf8_address_never_stops_the_sendgrid_run(
    samples: Newsletter, sendgrid: FakeSendGrid
) -> None:
    rows = [f"reader{i}@example.org,Reader {i},all\n" for i in range(1000)]
    rows.insert(500, "long@example.org," + "N" * 5100 + ",all\n")
    rows.insert(700, "cjk@example.org," + "名" * 850 + ",all\n")
    rows.insert(900, "ünicode@example.org,Ü,all\n")
    only_readers(samples, CSV_HEADER + "".join(rows))
    check = samples.cli("subscribers", "check")
    assert "subscribers/readers.csv:502: warning: name of 5100 characters shortened to its first 100" in check.stdout
    assert "subscribers/readers.csv:702: warning: name of 850 characters shortened to its first 100" in check.stdout
    sent = samples.cli("send", "2021-07", "--yes", env=sendgrid_env(sendgrid))
    got = sendgrid.by_reader()
    assert set(got) == {f"reader{i}@example.org" for i in range(1000)} | {"long@example.org", "cjk@example.org"}
    assert sent.exit_code == 1  # the one reader SendGrid cannot take is a failure, named
    assert (
        "failed: ünicode@example.org: SendGrid cannot deliver to an address with non-ASCII characters "
        "before the @ (SMTPUTF8)" in sent.stdout
    )


# -- the low ones --------------------------------------------------------------------------------


def test_a_250_word_subject_and_a_long_name_make_no_header_line_over_998_octets(samples: Newsletter) -> None:
    subject = " ".join(["Adverse effects — and burnout é"] * 50)  # 250 words, accents and dashes
    meta = samples.root / "issues" / "2021-07" / "issue.md"
    text = meta.read_text(encoding="utf-8")
    start = text.index("subject:")
    end = text.index("\n", start)
    meta.write_text(text[:start] + f'subject: "{subject}"' + text[end:], encoding="utf-8")
    only_readers(samples, CSV_HEADER + "long@example.org," + "Ñame " * 1000 + ",all\n")
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    (path,) = (samples.root / "outbox" / "2021-07").glob("*.eml")
    raw = path.read_bytes()
    head = raw[: raw.index(b"\r\n\r\n")]
    lines = head.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998  # RFC 5322's MUST
    # Its SHOULD (78) wherever the header can be folded: everything but a long URL.
    long = [line for line in lines if len(line) > 78 and b"http" not in line and b"mailto:" not in line]
    assert long == []
    msg = read_eml(path)
    assert str(msg["Subject"]) == subject
    # RFC 2047 ignores the folding between encoded words; the email package's
    # address parser does not (it adds spaces), so decode the name as the RFC says.
    to_line = re.search(rb"^To: (.*?)(?=\r\n\S)", head, re.M | re.S)
    assert to_line is not None
    encoded_name = to_line.group(1).decode().replace("\r\n", "").rsplit(" <", 1)[0]
    assert str(make_header(decode_header(encoded_name))) == ("Ñame " * 20).strip()


def test_a_whole_unreadable_subscriber_file_fails_the_send(samples: Newsletter) -> None:
    samples.write("subscribers/broken.csv", b"email,name,topics\nx@example.org,Caf\xe9,all\n")
    sent = samples.cli("send", "2021-07", "--yes")
    assert sent.exit_code == 1
    assert "not read: subscribers/broken.csv:2: error: is not valid UTF-8 (byte 0xe9)" in sent.stdout


def test_a_fifo_in_an_issue_folder_is_an_error_not_a_hang(samples: Newsletter) -> None:
    os.mkfifo(samples.root / "issues" / "2021-07" / "03-pipe.md")
    check = subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(samples.root), "check", "2021-07"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1
    assert "issues/2021-07/03-pipe.md:1: error: is not a regular file" in check.stdout


def test_a_read_only_or_corrupt_database_is_a_sentence_not_a_traceback(samples: Newsletter) -> None:
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    db = samples.root / "state" / "newsletter.db"
    read_only = {"NEWSLETTER_DATABASE_URL": f"sqlite:///file:{db}?mode=ro&uri=true"}
    sent = samples.cli("send", "2021-08", "--yes", env=read_only)
    assert sent.exit_code == 2
    assert "error: the database failed: attempt to write a readonly database" in sent.stderr
    db.write_bytes(b"not a database" * 400)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    status = samples.cli("status", "2021-07")
    assert status.exit_code == 2 and "file is not a database" in status.stderr


def test_a_weak_secret_a_send_time_with_an_offset_and_a_bad_test_address_are_refused(
    samples: Newsletter, sendgrid: FakeSendGrid
) -> None:
    weak = {**sendgrid_env(sendgrid), "NEWSLETTER_SECRET": "x"}
    sent = samples.cli("send", "2021-07", "--yes", env=weak)
    assert (
        sent.exit_code == 2
        and "NEWSLETTER_SECRET is too weak" in sent.stderr
        and "secrets.token_urlsafe" in sent.stderr
    )
    assert sendgrid.by_reader() == {}
    offset = samples.cli("schedule", "--next", env={"NEWSLETTER_SEND_TIME": "09:00+05:00"})
    assert offset.exit_code == 2 and "NEWSLETTER_SEND_TIME: 09:00:00+05:00 has a UTC offset" in offset.stderr
    test = samples.cli("send", "2021-07", "--test", "not-an-address")
    assert test.exit_code == 2 and "--test 'not-an-address' is not an email address" in test.stderr
    assert not (samples.root / "outbox").exists()


def test_a_key_that_may_not_read_suppressions_sends_with_a_warning(samples: Newsletter, sendgrid: FakeSendGrid) -> None:
    sendgrid.forbid_suppressions = True
    only_readers(samples, CSV_HEADER + "a@example.org,A,all\nb@example.org,B,all\n")
    sent = samples.cli("send", "2021-07", "--yes", env=sendgrid_env(sendgrid))
    assert sent.exit_code == 0, sent.stdout + sent.stderr
    assert (
        'warning: suppressions not synced (the last synced copy is used): the SendGrid API key may not read suppressions (give it "Suppressions: read" access)'
        in sent.stderr
    )
    assert set(sendgrid.by_reader()) == {"a@example.org", "b@example.org"}
    sync = samples.cli("suppressions", "sync", env=sendgrid_env(sendgrid))
    assert sync.exit_code == 2 and "Suppressions: read" in sync.stderr


def test_a_suppression_answer_that_is_not_json_is_a_sentence(samples: Newsletter, sendgrid: FakeSendGrid) -> None:
    sendgrid.suppressions_body = b"<html>maintenance</html>"
    sync = samples.cli("suppressions", "sync", env=sendgrid_env(sendgrid))
    assert sync.exit_code == 2
    assert "SendGrid's answer for suppression/unsubscribes is not a list of addresses" in sync.stderr
