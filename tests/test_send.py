"""`newsletter send` with the outbox backend: content, the ledger's guarantees, faults.

Every test runs twice, its ledger on SQLite and on PostgreSQL (``use_database``).
"""

from __future__ import annotations

import email.message
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from newsletter.delivery.ledger import Ledger

from conftest import Newsletter, july_readers, read_eml


def by_recipient(nl: Newsletter, issue: str = "2021-07") -> dict[str, list[email.message.EmailMessage]]:
    found: dict[str, list[email.message.EmailMessage]] = {}
    for path in nl.outbox(issue):
        msg = read_eml(path)
        found.setdefault(msg["To"].addresses[0].addr_spec.lower(), []).append(msg)
    return found


def test_send_writes_one_wellformed_message_per_active_matching_reader(samples: Newsletter, use_database: str) -> None:
    result = samples.cli("send", "2021-07", "--yes")
    assert result.exit_code == 0, result.stderr
    assert (
        "warning: NEWSLETTER_FROM, NEWSLETTER_POSTAL_ADDRESS, NEWSLETTER_SECRET, NEWSLETTER_UNSUBSCRIBE_MAILTO not set"
        in result.stderr
    )
    received = by_recipient(samples)
    # gus (Placebo only) matches nothing in July; ivan unsubscribed; jo bounced
    assert "gus.novak@example.org" not in received
    assert "ivan.petrov@example.org" not in received and "jo.mensah@example.org" not in received
    assert all(len(msgs) == 1 for msgs in received.values())
    assert "ana.silva@example.org" in received and "dev.patel@example.org" in received
    msg = received["lea.rossi@example.org"][0]
    raw = next(p for p in samples.outbox() if read_eml(p)["To"].addresses[0].username == "lea.rossi").read_bytes()
    unsubscribe_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"List-Unsubscribe:"))
    assert b"=?" not in unsubscribe_line  # not mangled into RFC 2047 encoded words
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert str(msg["To"]) == "Léa Rossi <lea.rossi@example.org>"
    assert msg["From"] and msg["Subject"] and msg["Date"] and msg["Message-ID"].startswith("<2021-07.")
    unsubscribe = str(msg["List-Unsubscribe"])
    assert unsubscribe.startswith("<https://") and "<mailto:unsubscribe@newsletter.example.org?subject=" in unsubscribe
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "lea" not in unsubscribe.lower()  # only an opaque token names the reader
    text = parts[0].get_content()
    assert "Léa Rossi" in text


def test_second_send_sends_nothing_and_says_so(samples: Newsletter, use_database: str) -> None:
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    before = samples.outbox()
    again = samples.cli("send", "2021-07", "--yes")
    assert again.exit_code == 0
    assert "nothing to send: 2021-07 has gone to every reader" in again.stdout
    assert samples.outbox() == before


def test_reader_added_later_gets_it_on_next_send(samples: Newsletter, use_database: str) -> None:
    samples.cli("send", "2021-07", "--yes")
    count = len(samples.outbox())
    with open(samples.root / "subscribers" / "sample.csv", "a", encoding="utf-8") as handle:
        handle.write("new.reader@example.org,New Reader,all,active\n")
    result = samples.cli("send", "2021-07", "--yes")
    assert result.exit_code == 0
    assert len(samples.outbox()) == count + 1
    assert "new.reader@example.org" in by_recipient(samples)


def test_names_are_escaped_in_html_and_raw_in_text(samples: Newsletter, use_database: str) -> None:
    samples.subscribers("bob@example.org,Bob <b>,all,\nco@example.org,Chloé & Co,all,\n")
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    received = by_recipient(samples)
    for address, raw, escaped in (
        ("bob@example.org", "Bob <b>", "Bob &lt;b&gt;"),
        ("co@example.org", "Chloé & Co", "Chloé &amp; Co"),
    ):
        text, html = (p.get_content() for p in received[address][0].iter_parts())
        assert raw in text and escaped in html and raw not in html


def test_draft_and_invalid_issues_are_refused(samples: Newsletter, use_database: str) -> None:
    draft = samples.cli("send", "2021-03", "--yes")
    assert draft.exit_code == 1
    assert "fails `newsletter check`" in draft.stderr or "is a draft" in draft.stderr
    assert samples.outbox("2021-03") == []


def test_a_variant_that_fails_to_render_stops_the_send_before_anyone_has_the_issue(
    samples: Newsletter, use_database: str
) -> None:
    # Only the variants of one summary break; the full issue's, sent first, would have gone.
    template = samples.root / "templates" / "email.txt.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text("{% if summaries|length == 1 %}{{ no_such_value.at_all }}{% endif %}" + text, encoding="utf-8")
    result = samples.cli("send", "2021-07", "--yes")
    assert result.exit_code == 1
    assert "templates/email.txt.j2:1: UndefinedError" in result.stderr and "Traceback" not in result.stderr
    assert samples.outbox("2021-07") == [] and Ledger(use_database).counts("2021-07") == {}


def test_dry_run_hands_nothing_over_and_writes_no_ledger(samples: Newsletter, use_database: str) -> None:
    result = samples.cli("send", "2021-07", "--dry-run")
    assert result.exit_code == 0
    assert "would send now" in result.stdout
    assert samples.outbox() == []
    assert Ledger(use_database).counts("2021-07") == {}


def test_test_send_marks_subject_and_leaves_ledger_alone(samples: Newsletter, use_database: str) -> None:
    result = samples.cli("send", "2021-07", "--test", "me@example.org", "--test", "you@example.org")
    assert result.exit_code == 0, result.stderr
    tests = samples.outbox("2021-07/test")
    assert len(tests) == 3 * 2  # every variant of a 2-summary issue, to both addresses
    assert all(str(read_eml(p)["Subject"]).startswith("[TEST] ") for p in tests)
    assert samples.outbox() == []
    assert Ledger(use_database).counts("2021-07") == {}


def test_strict_refuses_bad_rows_before_sending(samples: Newsletter, use_database: str) -> None:
    samples.subscribers("not-an-address,X,all,\n", name="bad")
    strict = samples.cli("send", "2021-07", "--yes", "--strict")
    assert strict.exit_code == 1 and "subscribers/bad.csv:2: error: invalid address" in strict.stderr
    assert samples.outbox() == []
    lenient = samples.cli("send", "2021-07", "--yes")
    # The others are sent; the row not read is named and makes the run fail.
    assert lenient.exit_code == 1 and "subscribers/bad.csv:2: error: invalid address" in lenient.stdout
    assert "not read: subscribers/bad.csv:2: error: invalid address" in lenient.stdout
    assert len(samples.outbox()) > 0


def cli_process(newsletter: Newsletter, *args: str) -> subprocess.Popen[str]:
    env = newsletter.env()
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def messages_in(folder: Path) -> int:
    """How many messages the outbox holds in ``folder``: ``Newsletter.outbox`` without its sort, to poll it."""
    return sum(entry.name.endswith(".eml") for entry in os.scandir(folder)) if folder.is_dir() else 0


def test_sigkill_at_any_moment_then_rerun_sends_everyone_exactly_once(samples: Newsletter, use_database: str) -> None:
    n = 3000
    samples.readers(n)
    everyone = july_readers(n)
    rng = random.Random(7)
    # Four random moments of the send itself, never before it starts nor after it ends: when the outbox
    # (a batch is 200 messages) reaches a random count below 80% of everyone, and a random 0-50 ms later.
    for moment in sorted(rng.sample(range(1, len(everyone) * 4 // 5), 4)):
        before = len(samples.outbox())
        target = max(moment, before + 1)  # a run that starts past the moment is killed once it has sent one
        proc = cli_process(samples, "send", "2021-07", "--yes")
        while messages_in(samples.root / "outbox" / "2021-07") < target:
            assert proc.poll() is None, f"the send ended before it could be killed: {proc.communicate()}"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Proof that the kill landed mid-send: the process was still running (a finished one exits 0),
        # it had handed over messages of its own, and some readers were still to go.
        assert proc.returncode == -signal.SIGKILL, proc.communicate()
        after = len(samples.outbox())
        with Ledger(use_database) as ledger:
            counts = ledger.counts("2021-07")
        assert before < after < len(everyone), (before, after, counts)
        assert counts.get("sent", 0) < len(everyone), counts
    final = cli_process(samples, "send", "2021-07", "--yes")
    _out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    received = by_recipient(samples)
    assert set(received) == everyone
    assert all(len(msgs) == 1 for msgs in received.values())
    with Ledger(use_database) as ledger:
        counts = ledger.counts("2021-07")
    assert counts.get("sent") == len(everyone) and "failed" not in counts and "in_doubt" not in counts


def test_two_sends_at_once_never_send_anyone_twice(samples: Newsletter, use_database: str) -> None:
    n = 3000
    samples.readers(n)
    procs = [cli_process(samples, "send", "2021-07", "--yes") for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    received = by_recipient(samples)
    assert set(received) == july_readers(n)
    assert all(len(msgs) == 1 for msgs in received.values())
    assert not any("already in the outbox" in out for out, _ in outputs)


KILLER = r'''
import os, signal, sys, time
from newsletter.delivery.backends.null import NullBackend
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.links import Links
from newsletter.render.renderer import Renderer
from newsletter.delivery.send import Sender, plan, send_issue
from newsletter.settings import load_settings, with_sample_defaults
from newsletter.content.workspace import Workspace


class DiesInFlight(NullBackend):
    """Hands over two batches; the process dies with the third in the air and the fourth claimed behind it."""
    batch_size = 10
    posts = 0

    def post(self, envelope, payload):
        type(self).posts += 1
        if type(self).posts == 3 and sys.argv[1] == "die":
            # The send loop claims the fourth batch meanwhile (and writes the answer to
            # the second with that claim). Looked at through a ledger of its own: the
            # sender's would write what it holds for its claims.
            watch = Ledger(settings.ledger_url)
            while (watch.counts("2030-01").get("sent"), watch.counts("2030-01").get("sending")) != (20, 20):
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().post(envelope, payload)


settings, _ = with_sample_defaults(load_settings())
ws = Workspace(settings)
issue = ws.load("2030-01")
sender = Sender(issue, DiesInFlight(), Renderer(settings), Links(settings), settings.from_address)
ledger = Ledger(settings.ledger_url)
audience, _ = plan(ws, issue, engine=ledger.engine)
report = send_issue(sender, audience, ledger, resend_in_doubt=sys.argv[2] == "resend")
print(report.sent, len(report.in_doubt))
'''


def test_batch_killed_in_flight_is_in_doubt_and_resent_only_when_asked(
    newsletter: Newsletter, use_database: str
) -> None:
    newsletter.issue()
    newsletter.subscribers("".join(f"r{i}@example.org,R{i},all,\n" for i in range(45)))
    script = newsletter.write("killer.py", KILLER)
    env = newsletter.env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True)

    died = run("die", "no")
    assert died.returncode == -signal.SIGKILL
    ledger = Ledger(use_database)
    # The batch in the air and the one claimed behind it; the last five readers
    # were never reached (a batch's rows are written just before its claim).
    left = ledger.counts("2030-01")
    assert left == {"sent": 20, "sending": 20}
    again = run("live", "no")
    assert again.stdout.split() == ["5", "20"]  # the rest sent; both batches reported, not resent
    assert ledger.counts("2030-01") == {"sent": 25, "in_doubt": 20}
    status = newsletter.cli("status", "2030-01")
    assert status.stdout.count("in_doubt: r") == 20
    resent = run("live", "resend")
    assert resent.stdout.split() == ["20", "0"]
    assert ledger.counts("2030-01") == {"sent": 45}


def test_a_skipped_reader_who_chooses_matching_topics_is_sent_the_next_time_and_no_longer_skipped(
    samples: Newsletter, use_database: str
) -> None:
    samples.readers(12)  # reader4 and reader10: "training", which no summary of 2021-07 has
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    ledger = Ledger(use_database)
    assert ledger.counts("2021-07") == {"sent": 10, "skipped": 2}
    skipped = [(r.email, r.reason) for r in ledger.rows("2021-07", ["skipped"])]
    assert skipped == [
        ("reader10@example.org", "no summary matches their topics"),
        ("reader4@example.org", "no summary matches their topics"),
    ]
    status = samples.cli("status", "2021-07").stdout
    assert "│ skipped  │ 2       │" in status

    # reader4 now reads about anxiety too; reader10 left the list
    rows = (samples.root / "subscribers" / "sample.csv").read_text().splitlines(keepends=True)
    rows = [r.replace(",training,", ",training;anxiety,") if r.startswith("reader4@") else r for r in rows]
    (samples.root / "subscribers" / "sample.csv").write_text("".join(r for r in rows if not r.startswith("reader10@")))
    again = samples.cli("send", "2021-07", "--yes")
    assert again.exit_code == 0, again.stderr
    assert "reader4@example.org" in by_recipient(samples)
    assert ledger.counts("2021-07") == {"sent": 11}  # the second run's sheet replaced the first's
    assert ledger.rows("2021-07", ["skipped"]) == []
    ledger.close()
