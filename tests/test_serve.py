"""`newsletter serve` over real HTTP (httpx → uvicorn on 127.0.0.1): every route and its safety."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from newsletter.content.workspace import Workspace
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.links import Links
from newsletter.delivery.readers import reader_store
from newsletter.errors import ConfigError
from newsletter.settings import load_settings
from newsletter.web.readers import bind, serving_settings

from conftest import Newsletter
from serving import Server, form_token, link_in, mails, serving, text_of, to_of, wait_for_mails

HEADER = "email,name,topics,status\n"


def subscribe(
    server: Server, address: str, name: str = "", topics: tuple[str, ...] = (), **extra: str
) -> httpx.Response:
    data: dict[str, object] = {"form_token": server.form("/subscribe/"), "email": address, "name": name}
    data["topic"] = list(topics)
    data.update(extra)
    return server.client.post("/subscribe/", data=data)


def confirm(server: Server, link: str) -> httpx.Response:
    page = server.client.get(link)
    assert page.status_code == 200, page.text
    token = re.search(r'name="t" value="([^"]+)"', page.text)
    assert token
    return server.client.post("/confirm/", data={"form_token": form_token(page.text), "t": token.group(1)})


def reader(server: Server, address: str) -> object:
    return server.app.store.get(address)


@pytest.fixture
def server(samples: Newsletter, monkeypatch: pytest.MonkeyPatch) -> object:
    with serving(samples, monkeypatch) as running:
        yield running


def test_signup_needs_the_button_not_the_link_and_a_link_confirms_once(server: Server) -> None:
    answer = subscribe(server, "New.Reader@Example.org", "New Reader", ("empathy", "training"))
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    [msg] = wait_for_mails(server.nl.root, "confirm", 1)
    assert to_of(msg) == "new.reader@example.org" and "List-Unsubscribe" not in msg
    assert "Empathy, Training" in text_of(msg)
    link = link_in(msg, "confirm")
    # The link names a random nonce, not the reader: neither in it nor in its signed payload.
    token = link.split("?t=")[1]
    body = token.split(".")[0]
    named = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8", "replace").lower()
    assert "new.reader" not in named and "new.reader" not in token.lower()
    for _ in range(3):  # a mail scanner opening the link changes nothing
        assert server.client.get(link).status_code == 200
    assert reader(server, "new.reader@example.org") is None
    done = confirm(server, link)
    assert done.status_code == 200 and "You are subscribed" in done.text
    joined = server.app.store.get("new.reader@example.org")
    assert joined is not None and joined.status == "active" and joined.topics == {"empathy", "training"}
    again = server.client.get(link)
    assert again.status_code == 200  # the page; its button now finds nothing
    assert "expired" in confirm(server, link).text


def test_the_answer_is_the_same_for_new_pending_and_known_addresses(server: Server) -> None:
    pages = []
    for address in ("nobody.yet@example.org", "nobody.yet@example.org", "ana.silva@example.org"):
        response = subscribe(server, address, "", (), all="1")
        pages.append((response.status_code, re.sub(r'value="[^"]+"', "", response.text)))
    assert pages[0] == pages[1] == pages[2]
    manage = []
    for address in ("lea.rossi@example.org", "stranger@example.org", "lea.rossi@example.org", "ana.silva@example.org"):
        response = server.client.post("/manage/", data={"form_token": server.form("/manage/"), "email": address})
        manage.append((response.status_code, response.text))
    assert manage[0] == manage[1] == manage[2] == manage[3]
    [link_mail] = wait_for_mails(server.nl.root, "link", 1)
    assert [to_of(m) for m in wait_for_mails(server.nl.root, "link", 2, timeout=1.0)] == ["lea.rossi@example.org"]
    assert to_of(link_mail) == "lea.rossi@example.org"  # only a known reader gets one
    assert "/preferences/?t=" in text_of(link_mail)
    # One confirmation or link email per address per 10 minutes, however often asked (Ana just had a confirmation).
    sent = wait_for_mails(server.nl.root, "confirm", 2)
    assert sorted(to_of(m) for m in sent) == ["ana.silva@example.org", "nobody.yet@example.org"]


def test_a_known_reader_signing_up_again_confirms_and_new_topics_and_name_apply(server: Server) -> None:
    subscribe(server, "ben.okafor@example.org", "Benjamin Okafor", ("empathy",))
    [msg] = wait_for_mails(server.nl.root, "confirm", 1)
    before = server.app.store.get("ben.okafor@example.org")
    assert before is not None and before.name == "Ben Okafor"  # nothing changes before confirming
    confirm(server, link_in(msg, "confirm"))
    after = server.app.store.get("ben.okafor@example.org")
    assert after is not None and after.name == "Benjamin Okafor" and after.topics == {"empathy"}


def test_honeypot_filled_sends_nothing(server: Server) -> None:
    answer = subscribe(server, "bot@example.org", "Bot", (), all="1", website="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert wait_for_mails(server.nl.root, "confirm", 1, timeout=1.0) == []


def test_forms_refuse_posts_without_a_valid_token_or_from_another_site(server: Server) -> None:
    data = {"email": "x@example.org", "all": "1"}
    assert server.client.post("/subscribe/", data=data).status_code == 403
    assert server.client.post("/subscribe/", data={**data, "form_token": "forged.token.x"}).status_code == 403
    token = server.form("/manage/")  # a token of another form
    assert server.client.post("/subscribe/", data={**data, "form_token": token}).status_code == 403
    good = {**data, "form_token": server.form("/subscribe/")}
    elsewhere = server.client.post("/subscribe/", data=good, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    assert server.client.post("/subscribe/", data=good, headers={"Origin": server.url}).status_code == 200


def test_every_response_carries_the_safety_headers_and_no_cookie(server: Server) -> None:
    server.nl.cli("archive")
    for path in ("/subscribe/", "/manage/", "/", "/2021-07/", "/topics/empathy/", "/healthz", "/nowhere/"):
        response = server.client.get(path)
        assert response.headers["referrer-policy"] == "no-referrer", path
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, path
        assert "set-cookie" not in response.headers, path
    home = server.client.get("/")
    assert home.status_code == 200 and "script-src 'sha256-" in home.headers["content-security-policy"]
    assert f'href="{server.url}/subscribe/"' in home.text  # every archive page invites visitors to subscribe
    topic = server.client.get("/topics/empathy/")
    assert f'href="{server.url}/subscribe/?topic=empathy"' in topic.text
    checked = server.client.get("/subscribe/?topic=empathy").text
    assert re.search(r'value="empathy" checked', checked)
    assert server.client.get("/healthz").text == "ok"


def test_preferences_and_unsubscribe_links_of_a_sent_email_work_and_one_click_needs_no_form(
    server: Server, samples: Newsletter
) -> None:
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    [msg] = [m for m in mails(samples.root, "2021-07") if to_of(m) == "dev.patel@example.org"]
    preferences = link_in(msg, "preferences")
    unsubscribe = re.search(r"<(http[^>]+/unsubscribe/\?t=[^>]+)>", str(msg["List-Unsubscribe"]))
    assert unsubscribe and preferences.startswith(server.url)
    page = server.client.get(preferences)
    assert page.status_code == 200 and "dev.patel@example.org" in page.text
    assert "this month's issue (August 2021) brought you 1 of its 1 summary" in page.text
    # Save other topics: the next send follows them.
    saved = server.client.post(
        preferences, data={"form_token": form_token(page.text), "name": "Dev P.", "topic": ["placebo"]}
    )
    assert saved.status_code == 200 and "Saved" in saved.text
    assert re.search(r'value="placebo" checked', saved.text) and not re.search(
        r'value="depression" checked', saved.text
    )
    assert "brought you 0 of its 1 summary" in saved.text
    # RFC 8058: the mail client's POST, with no cookie and no form token, unsubscribes at once.
    assert server.client.get(unsubscribe.group(1)).status_code == 200  # GET changes nothing
    assert server.app.store.get("dev.patel@example.org").status == "active"  # type: ignore[union-attr]
    one_click = httpx.post(
        unsubscribe.group(1),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 200 <= one_click.status_code < 300
    assert server.app.store.get("dev.patel@example.org").status == "unsubscribed"  # type: ignore[union-attr]
    # The page offers undoing it.
    page = server.client.get(unsubscribe.group(1))
    assert "You are unsubscribed" in page.text and "Change your topics" not in page.text
    undone = server.client.post(unsubscribe.group(1), data={"form_token": form_token(page.text), "action": "undo"})
    assert undone.status_code == 200
    assert server.app.store.get("dev.patel@example.org").status == "active"  # type: ignore[union-attr]
    # A token that is not a reader's gets a page, not a clue.
    assert server.client.get("/preferences/?t=AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert httpx.post(f"{server.url}/unsubscribe/?t=nope", data={"List-Unsubscribe": "One-Click"}).status_code == 404


def test_an_unsubscribe_is_never_undone_by_the_file_but_a_newer_file_edit_wins_over_topics(
    server: Server, samples: Newsletter
) -> None:
    store = server.app.store
    store.choose("ben.okafor@example.org", status="unsubscribed")
    store.choose("chloe.martin@example.org", topics=frozenset({"training"}))
    check = samples.cli("subscribers", "check")
    assert "subscribers/sample.csv:3: note: ben.okafor@example.org chose their own status" in check.stdout
    assert "subscribers/sample.csv:4: note: chloe.martin@example.org chose their own topics" in check.stdout
    exported = samples.cli("subscribers", "export").stdout
    assert "ben.okafor@example.org,Ben Okafor,therapist-factors;training,unsubscribed" in exported
    assert "chloe.martin@example.org,Chloé Martin,training,active" in exported
    # The author edits both rows afterwards: the edit wins over topics, never over an unsubscribe.
    csv = (samples.root / "subscribers" / "sample.csv").read_text(encoding="utf-8")
    csv = csv.replace("Ben Okafor,Therapist Factors;Training,active", "Ben Okafor,all,active")
    csv = csv.replace("Chloé Martin,alliance;empathy,active", "Chloé Martin,empathy,active")
    (samples.root / "subscribers" / "sample.csv").write_text(csv, encoding="utf-8")
    exported = samples.cli("subscribers", "export").stdout
    assert "ben.okafor@example.org,Ben Okafor,all,unsubscribed" in exported
    assert "chloe.martin@example.org,Chloé Martin,empathy,active" in exported
    out = samples.root / "readers.csv"
    assert samples.cli("subscribers", "export", "--out", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8") == exported
    assert exported.startswith(HEADER) and exported.count("\n") == 13


HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "Robert'); DROP TABLE readers;--",
    "a\r\nBcc: victim@example.org",
    "\x00\x07\x1b[31m",
    "x" * 5000,
    "\u202egnp.exe",
    "{{ 7*7 }} __nl_unsubscribe_url__",
    "😀" * 200,
]


def test_hostile_input_in_every_field_is_refused_or_escaped(
    samples: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(samples, monkeypatch, NEWSLETTER_FORM_RATE_LIMIT="1000") as server:
        hostile(server, samples)


def hostile(server: Server, samples: Newsletter) -> None:
    for value in HOSTILE:
        for path, fields in (
            ("/subscribe/", {"email": value, "name": value, "topic": [value], "website": ""}),
            ("/manage/", {"email": value}),
        ):
            response = server.client.post(path, data={"form_token": server.form(path), **fields})
            assert response.status_code in (200, 400), (path, value, response.text[:200])
            assert "<script>alert" not in response.text and "<img src=x" not in response.text
        for path in ("/preferences/", "/unsubscribe/", "/confirm/"):
            response = server.client.get(path, params={"t": value})
            assert response.status_code in (400, 404), (path, value)
            assert "<script>alert" not in response.text
        assert server.client.get("/subscribe/", params={"topic": value}).status_code == 200
    # A name that tries everything, through a real sign-up, into a sent email.
    name = HOSTILE[0] + " " + HOSTILE[3] + " " + HOSTILE[7]
    answer = subscribe(server, "mallory@example.org", name, ("therapist-factors",))
    assert answer.status_code == 200, answer.text
    [msg] = wait_for_mails(samples.root, "confirm", 1)
    confirm(server, link_in(msg, "confirm"))
    stored = server.app.store.get("mallory@example.org")
    assert stored is not None and "\r" not in stored.name and "\n" not in stored.name and len(stored.name) <= 100
    page = server.client.get(link_in(msg, "confirm").replace("confirm", "preferences"))
    assert page.status_code == 404  # a confirmation token is no preferences token
    token = server.app.links.token("mallory@example.org")
    page = server.client.get("/preferences/", params={"t": token})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert" not in page.text
    assert samples.cli("send", "2021-07", "--yes").exit_code == 0
    [sent] = [m for m in mails(samples.root, "2021-07") if to_of(m) == "mallory@example.org"]
    assert "Bcc" not in sent and "victim" not in str(sent["To"]).split("<")[-1]
    html_part = sent.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>alert" not in html_part and "&lt;script&gt;" in html_part
    assert f"Dear {stored.name}," in text_of(sent)  # as typed: a token in a name is text, never filled in


def test_form_posts_are_limited_per_client_address(samples: Newsletter, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(samples, monkeypatch, NEWSLETTER_FORM_RATE_LIMIT="3") as server:
        codes = [
            server.client.post(
                "/manage/", data={"form_token": server.form("/manage/"), "email": f"r{i}@example.org"}
            ).status_code
            for i in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        # Behind the trusted proxy (127.0.0.1), another forwarded client address has its own allowance.
        other = server.client.post(
            "/manage/",
            data={"form_token": server.form("/manage/"), "email": "r9@example.org"},
            headers={"X-Forwarded-For": "127.0.0.9"},
        )
        assert other.status_code == 200


def test_the_merged_readers_survive_a_restart_and_a_changed_secret(
    samples: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(samples.root)
    with Ledger(settings.ledger_url) as ledger:
        store = reader_store(settings, ledger.engine)
        store.load(settings.subscribers_dir, Workspace(settings).taxonomy)
        store.choose("gus.novak@example.org", topics=frozenset({"training"}))
    monkeypatch.setenv("NEWSLETTER_SECRET", "another-secret-entirely")
    with serving(samples, monkeypatch) as server:
        token = server.app.links.token("gus.novak@example.org")
        page = server.client.get("/preferences/", params={"t": token})
        assert page.status_code == 200 and re.search(r'value="training" checked', page.text)


def test_oversized_bodies_are_refused_before_they_are_read(server: Server) -> None:
    big = {"form_token": server.form("/subscribe/"), "email": "a@example.org", "name": "x" * 100_000}
    assert server.client.post("/subscribe/", data=big).status_code == 413
    assert server.client.post("/webhooks/sendgrid", content=b"[" + b" " * 9_000_000 + b"]").status_code == 413
    assert server.client.get("/subscribe/").status_code == 200  # and the server goes on


def test_a_base_url_with_a_path_serves_everything_under_it(
    samples: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(samples, monkeypatch, path="/digest") as server:
        assert samples.cli("archive").exit_code == 0
        root = server.url.removesuffix("/digest")
        assert httpx.get(f"{root}/subscribe/").status_code == 404
        assert server.client.get("subscribe/").status_code == 200 and server.client.get("2021-07/").status_code == 200
        answer = server.client.post(
            "subscribe/", data={"form_token": server.form("subscribe/"), "email": "p@example.org", "all": "1"}
        )
        assert answer.status_code == 200
        [msg] = wait_for_mails(samples.root, "confirm", 1)
        link = link_in(msg, "confirm")
        assert link.startswith(f"{server.url}/confirm/")
        assert "You are subscribed" in confirm(server, link).text


def test_a_public_address_is_never_served_with_the_sample_secret(samples: Newsletter) -> None:
    settings = load_settings(samples.root, base_url="https://newsletter.example.org")
    with pytest.raises(ConfigError, match="needs NEWSLETTER_SECRET"):
        serving_settings(settings)
    assert serving_settings(load_settings(samples.root, base_url="https://newsletter.example.org", secret="s"))[0]
    assert serving_settings(load_settings(samples.root, base_url="http://127.0.0.1:8080"))[1]  # a warning, served


def test_the_command_serves_until_sigterm_and_its_log_holds_no_token_or_address(samples: Newsletter) -> None:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env.update(NEWSLETTER_BASE_URL=url, NEWSLETTER_SECRET="a-real-secret")
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--root", str(samples.root), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        token = Links(load_settings(samples.root, secret="a-real-secret")).token("ana.silva@example.org")
        assert httpx.get(f"{url}/preferences/", params={"t": token}).status_code == 200
        assert (
            httpx.post(f"{url}/unsubscribe/", params={"t": token}, data={"List-Unsubscribe": "One-Click"}).status_code
            == 200
        )
        page = httpx.get(f"{url}/manage/")
        httpx.post(f"{url}/manage/", data={"form_token": form_token(page.text), "email": "ana.silva@example.org"})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"on http://127.0.0.1:{port}/" in out
    assert "GET /preferences/ 200" in err and "POST /unsubscribe/ 200" in err  # a line per request...
    assert token not in out + err and "ana.silva" not in out + err  # ...without the token or the address
