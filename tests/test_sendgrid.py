"""The SendGrid backend: the real ``sendgrid`` client against a fake SendGrid on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from newsletter.delivery.backends.sendgrid import PayloadError, SendGridBackend, validate
from newsletter.delivery.links import Links
from newsletter.errors import BatchFailed
from newsletter.settings import load_settings

from conftest import Newsletter, july_readers
from fake_sendgrid import FakeSendGrid


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    server = FakeSendGrid().start()
    yield server
    server.stop()


def env_for(fake: FakeSendGrid, **extra: str) -> dict[str, str]:
    return fake.settings(
        SENDGRID_BACKOFF="0.01", SENDGRID_TIMEOUT="1", NEWSLETTER_REPLY_TO="editor@pprnet.example.org", **extra
    )


def test_each_reader_gets_their_variant_once_in_few_requests(samples: Newsletter, fake: FakeSendGrid) -> None:
    samples.readers(2400, extra="bob@example.org,Bob <b>,all,\nco@example.org,Chloé & Co,all,\n")
    result = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert result.exit_code == 0, result.stdout + result.stderr
    got = fake.by_reader()
    assert set(got) == july_readers(2400) | {"bob@example.org", "co@example.org"}
    assert all(len(messages) == 1 for messages in got.values())
    # one request serves many readers: variants of 1,000-reader batches
    assert len(fake.requests) <= 6 and max(len(r["personalizations"]) for r in fake.requests) <= 1000
    for address, (message,) in got.items():
        variant = message.custom_args["variant"]
        assert message.custom_args["issue"] == "2021-07" and message.custom_args["batch"]
        assert message.categories == ["newsletter", "issue-2021-07", f"variant-{variant}"]
        assert message.asm_group_id == 4242
        assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert (
            "https://sendgrid.test/unsubscribe/4242/" in message.html
            and "https://sendgrid.test/unsubscribe/4242/" in message.text
        )
        # Topics are ours, not SendGrid's: the reader's own preferences page, with their token.
        token = Links(load_settings(samples.root, secret=env_for(fake)["NEWSLETTER_SECRET"])).token(address)
        preferences = f"https://newsletter.example.org/preferences/?t={token}"
        assert preferences in message.html and preferences in message.text
        assert "__nl_" not in message.html + message.text and "<%" not in message.html + message.text
        assert message.tracking["open_tracking"] == {"enable": False}
        assert message.tracking["click_tracking"]["enable"] is False
    anxious = got["reader1@example.org"][0]  # anxiety: only the burnout summary
    assert anxious.custom_args["variant"] == "02"
    assert "Psychotherapist burnout affects patient outcomes" in anxious.html
    assert "Only recently have psychotherapy researchers" not in anxious.html
    bob, co = got["bob@example.org"][0], got["co@example.org"][0]
    assert "Bob &lt;b&gt;" in bob.html and "Bob <b>" not in bob.html and "Bob <b>" in bob.text
    assert "Chloé &amp; Co" in co.html and "Chloé & Co" in co.text
    assert fake.requests[0]["content"][0]["type"] == "text/plain"
    assert fake.requests[0]["reply_to"] == {"email": "editor@pprnet.example.org"}
    assert samples.ledger().counts("2021-07")["sent"] == len(got)
    again = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert again.exit_code == 0 and "nothing to send" in again.stdout
    assert len(fake.received) == len(got)


@pytest.mark.parametrize("faults", [["429"], ["429-bare"], ["500", "500"], ["429", "500", "429-bare", "500"]])
def test_retryable_faults_are_survived_without_duplicates(
    samples: Newsletter, fake: FakeSendGrid, faults: list[str]
) -> None:
    samples.readers(1300)
    fake.faults.extend(faults)
    result = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert result.exit_code == 0, result.stdout + result.stderr
    got = fake.by_reader()
    assert set(got) == july_readers(1300)
    assert all(len(m) == 1 for m in got.values())
    assert not fake.faults  # every fault was met


@pytest.mark.parametrize("fault", ["slow", "drop-after", "drop-before"])
def test_answer_lost_after_handover_is_in_doubt_not_resent(samples: Newsletter, fake: FakeSendGrid, fault: str) -> None:
    # Once the whole request is written, a timeout or a dropped connection
    # cannot tell "accepted" from "not": the batch is in doubt, not retried.
    samples.readers(1300)
    fake.faults.append(fault)
    fake.slow_seconds = 2.5
    result = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert result.exit_code == 1  # in doubt needs the author's decision
    in_doubt = samples.ledger().counts("2021-07").get("in_doubt", 0)
    assert in_doubt > 0 and "in doubt: reader" in result.stdout
    again = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert again.exit_code == 1 and "in doubt: reader" in again.stdout
    got = fake.by_reader()
    assert all(len(m) == 1 for m in got.values())  # nobody twice
    accepted = fault != "drop-before"
    assert (set(got) == july_readers(1300)) is accepted
    assert samples.ledger().counts("2021-07").get("in_doubt") == in_doubt
    if not accepted:  # the author, knowing better, resends them
        resent = samples.cli("send", "2021-07", "--yes", "--resend-in-doubt", env=env_for(fake))
        assert resent.exit_code == 0
        got = fake.by_reader()
        assert set(got) == july_readers(1300) and all(len(m) == 1 for m in got.values())


def test_unreachable_host_is_retried_with_backoff_then_failed() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    waits: list[float] = []
    backend = SendGridBackend(
        "SG.key", host=f"http://127.0.0.1:{port}", asm_group_id=1, max_attempts=4, backoff=0.5, sleep=waits.append
    )
    with pytest.raises(
        BatchFailed, match=r"gave up after 4 attempts: cannot reach SendGrid: \[Errno 111\] Connection refused"
    ):
        backend.post(None, base_payload(1))  # type: ignore[arg-type]
    assert len(waits) == 4
    assert all(0 <= w <= 0.5 * 2**i for i, w in enumerate(waits))  # exponential, with jitter


def test_a_refused_batch_fails_alone_with_sendgrids_message(samples: Newsletter, fake: FakeSendGrid) -> None:
    samples.readers(1300)
    fake.faults.append("400")
    result = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert result.exit_code == 1
    assert (
        "SendGrid refused the batch (400): The from email does not contain a valid address. (field from.email)"
        in result.stdout
    )
    counts = samples.ledger().counts("2021-07")
    assert counts["failed"] > 0 and counts["sent"] > 0
    assert counts["failed"] + counts["sent"] == len(july_readers(1300))
    retry = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert retry.exit_code == 0
    assert set(fake.by_reader()) == july_readers(1300)


def test_api_key_never_appears_in_output_or_logs(
    samples: Newsletter, fake: FakeSendGrid, caplog: pytest.LogCaptureFixture
) -> None:
    samples.readers(10)
    caplog.set_level(logging.DEBUG)
    wrong = env_for(fake, SENDGRID_API_KEY="SG.wrong-key-must-not-leak")
    result = samples.cli("send", "2021-07", "--yes", env=wrong)
    assert result.exit_code != 0
    assert "authorization grant is invalid" in result.stdout + result.stderr
    good = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert good.exit_code == 0
    everything = result.stdout + result.stderr + good.stdout + good.stderr + caplog.text
    assert "SG.wrong-key-must-not-leak" not in everything and fake.api_key not in everything
    assert "reader1@example.org" not in caplog.text  # no reader data in logs


def test_suppressions_are_fetched_paged_and_skipped(samples: Newsletter, fake: FakeSendGrid) -> None:
    samples.readers(1300)
    fake.suppressions["bounces"] = [f"gone{i}@example.org" for i in range(700)] + ["reader0@example.org"]
    fake.suppressions["spam_reports"] = ["READER2@example.org"]
    fake.group_suppressions[4242] = ["reader3@example.org"]
    synced = samples.cli("suppressions", "sync", env=env_for(fake))
    assert (
        synced.exit_code == 0
        and synced.stdout
        == "synced 703 suppressed addresses from SendGrid (" + fake.url + ", unsubscribe group 4242)\n"
    )
    audience = samples.cli("audience", "2021-07", env=env_for(fake))
    assert "skipped: 1 (bounced (SendGrid))" in audience.stdout
    assert "skipped: 1 (reported spam (SendGrid))" in audience.stdout
    assert "skipped: 1 (unsubscribed from this newsletter (SendGrid))" in audience.stdout
    result = samples.cli("send", "2021-07", "--yes", env=env_for(fake))
    assert result.exit_code == 0
    got = fake.by_reader()
    assert "reader0@example.org" not in got and "reader2@example.org" not in got and "reader3@example.org" not in got
    assert set(got) == july_readers(1300) - {"reader0@example.org", "reader2@example.org", "reader3@example.org"}
    skipped = {r.email: r.reason for r in samples.ledger().rows("2021-07", ["skipped"])}
    assert skipped["reader0@example.org"] == "bounced (SendGrid)"


def test_dry_run_builds_and_validates_without_posting(samples: Newsletter, fake: FakeSendGrid) -> None:
    samples.readers(1300)
    result = samples.cli("send", "2021-07", "--dry-run", env=env_for(fake))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (
        f"would send now │ {len(july_readers(1300))}" in result.stdout.replace("  ", " ").replace("  ", " ")
        or str(len(july_readers(1300))) in result.stdout
    )
    assert fake.requests == [] and fake.received == []
    assert samples.ledger().counts("2021-07") == {}


def test_test_send_goes_through_sendgrid_without_ledger(samples: Newsletter, fake: FakeSendGrid) -> None:
    result = samples.cli("send", "2021-07", "--test", "me@example.org", env=env_for(fake))
    assert result.exit_code == 0, result.stderr
    assert [m.subject for m in fake.received] == ["[TEST] " + fake.received[0].subject.removeprefix("[TEST] ")] * 3
    assert sorted(m.custom_args["variant"] for m in fake.received) == ["01", "02", "all"]
    assert samples.ledger().counts("2021-07") == {}


def test_real_send_refuses_without_unsubscribe_group_or_sender(samples: Newsletter, fake: FakeSendGrid) -> None:
    result = samples.cli(
        "send", "2021-07", "--yes", env=env_for(fake, SENDGRID_ASM_GROUP_ID="", NEWSLETTER_POSTAL_ADDRESS="")
    )
    assert result.exit_code == 2
    assert "a real send needs NEWSLETTER_POSTAL_ADDRESS, SENDGRID_ASM_GROUP_ID" in result.stderr
    assert fake.requests == []


def base_payload(n: int) -> dict:
    return {
        "personalizations": [{"to": [{"email": f"r{i}@x.org"}], "substitutions": {"-a-": "x"}} for i in range(n)],
        "from": {"email": "a@x.org"},
        "subject": "s",
        "categories": ["a"],
        "custom_args": {"a": "b"},
        "content": [{"type": "text/plain", "value": "t"}, {"type": "text/html", "value": "h"}],
    }


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda p: p["personalizations"].extend(base_payload(1001)["personalizations"][1000:]), "personalizations"),
        (lambda p: p["personalizations"].__setitem__(999, {"to": [{"email": "R1@x.org"}]}), "appears twice"),
        (lambda p: p.update(categories=[str(i) for i in range(11)]), "categories"),
        (lambda p: p.update(custom_args={"a": "x" * 10_001}), "custom_args"),
        (lambda p: p["personalizations"][0].update(substitutions={"-a-": "x" * 10_001}), "substitutions"),
        (lambda p: p.update(content=list(reversed(p["content"]))), "text/plain"),
        (lambda p: p["content"][1].update(value="x" * (30 * 1024 * 1024)), "over SendGrid's"),
    ],
)
def test_payload_limits_are_enforced_before_sending(change, words: str) -> None:  # type: ignore[no-untyped-def]
    payload = base_payload(1000)
    validate(payload)
    change(payload)
    with pytest.raises(PayloadError, match=words):
        validate(payload)


def test_build_checks_what_it_makes_and_measures_only_a_request_near_the_limit() -> None:
    # build() checks each personalization as it makes it, and bounds the request's
    # size instead of serialising it; a request the bound does not clear is measured.
    from newsletter.delivery.backends.base import Envelope, Recipient
    from newsletter.render.variant import Variant

    backend = SendGridBackend("SG.key", host="http://127.0.0.1:9", asm_group_id=1)

    def envelope(html: str) -> Envelope:
        variant = Variant("2030-01", "all", ("a",), "Subject", html=html, text="text")
        # a subject of its own: the backend keeps each variant's content by issue, variant and subject
        return Envelope("2030-01", variant, f"Subject {len(html)}", "Digest <d@x.org>", None, "batch")

    people = [Recipient(f"r{i}@x.org", f"R {i}", "", "", "") for i in range(1000)]
    assert len(backend.build(envelope("<p>hi</p>"), people)["personalizations"]) == 1000
    with pytest.raises(PayloadError, match=r"r1@x\.org appears twice"):
        backend.build(envelope("<p>hi</p>"), [*people[:5], Recipient("R1@x.org", "", "", "", "")])
    # 25 MB of content and the bound of 1,000 personalizations pass 30 MiB: measured, it fits
    assert backend.build(envelope("x" * 25_000_000), people)
    with pytest.raises(PayloadError, match="over SendGrid's"):
        backend.build(envelope("x" * 32_000_000), people)
    assert backend.refuse(Recipient("a@x.org", "é" * 400, "", "", "")) is None
    assert "over SendGrid's 10000 bytes" in str(backend.refuse(Recipient("a@x.org", "\U0001f600" * 500, "", "", "")))
