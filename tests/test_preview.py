"""``newsletter preview`` without a browser: routes, errors, the CLI. Chromium's part is in test_browser.py."""

from __future__ import annotations

import html
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

from newsletter.content.workspace import Workspace
from newsletter.render.renderer import Renderer, fill_sample
from newsletter.settings import load_settings
from newsletter.web.preview import Preview, PreviewServer

from conftest import Newsletter

SUMMARY_FILE = "issues/2021-07/01-adverse-effects.md"


def get(url: str) -> tuple[int, str, str]:
    """Status, body and Location of a GET, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8"), response.headers.get("Location", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8"), err.headers.get("Location", "")


def test_raw_variant_is_the_email_as_built_without_the_reload_script(
    samples: Newsletter, preview_server: PreviewServer
) -> None:
    settings = load_settings(samples.root)
    issue = Workspace(settings).load("2021-07")
    expected_html, expected_text = fill_sample(Renderer(settings).render(issue, ["adverse-effects"]), settings.base_url)
    status, page, _ = get(f"{preview_server.url}raw/01.html")
    assert (status, page) == (200, expected_html)
    assert "<script" not in page
    assert get(f"{preview_server.url}raw/01.txt")[:2] == (200, expected_text)


def test_topics_redirect_to_the_readers_variant(preview_server: PreviewServer) -> None:
    url = preview_server.url
    assert get(f"{url}?topics=feedback")[::2] == (303, "/variant/01?topics=feedback")
    assert get(f"{url}?topics=Therapist%20Factors")[::2] == (303, "/variant/02?topics=Therapist%20Factors")
    assert get(f"{url}?topics=ALL")[::2] == (303, "/variant/all?topics=ALL")
    status, page, _ = get(f"{url}?topics=training")
    assert status == 200 and "A reader with topics Training gets nothing this month" in page
    # A reader whose variant changed (after an edit) is sent to the new one.
    assert get(f"{url}variant/02?topics=feedback")[::2] == (303, "/variant/01?topics=feedback")


def test_unknown_pages_are_404_and_name_the_variants(preview_server: PreviewServer) -> None:
    status, page, _ = get(f"{preview_server.url}variant/03")
    # As the browser shows it: how the quotes are escaped is Jinja's choice (&#39;), not a behaviour.
    assert status == 404 and "issue 2021-07 has no variant '03' (it has all, 01, 02)" in html.unescape(page)
    assert get(f"{preview_server.url}nowhere")[0] == 404


def test_version_changes_with_the_files(samples: Newsletter) -> None:
    view = Preview(load_settings(samples.root), "2021-07")
    before = view.respond("/__version").body
    assert view.respond("/__version").body == before
    view.changed([samples.root / SUMMARY_FILE])
    assert view.respond("/__version").body != before


def test_a_broken_template_shows_its_error_and_recovers(samples: Newsletter) -> None:
    view = Preview(load_settings(samples.root), "2021-07")
    template = samples.root / "templates" / "_summary.mjml.j2"
    original = template.read_text(encoding="utf-8")
    template.write_text(original + "{% if %}\n", encoding="utf-8")
    view.changed([template])
    response = view.respond("/variant/all")
    assert response.status == 500 and "_summary.mjml.j2" in response.body
    template.write_text(original, encoding="utf-8")
    view.changed([template])
    assert view.respond("/variant/all").status == 200


def test_a_broken_summary_lists_its_problems_on_every_page(samples: Newsletter) -> None:
    view = Preview(load_settings(samples.root), "2021-07")
    samples.write(SUMMARY_FILE, "---\ntitle: [unclosed\n---\nbody\n")
    index, variant = view.respond("/"), view.respond("/variant/all")
    assert index.status == 200 and variant.status == 500
    for page in (index.body, variant.body):
        assert f"{SUMMARY_FILE}:2: error: invalid YAML in front matter" in page


def test_index_links_to_the_issues_archive_page_and_serves_the_local_build(samples: Newsletter) -> None:
    settings = load_settings(samples.root)
    public = f"{settings.base_url}/2021-07/"
    view = Preview(settings, "2021-07")
    before = view.respond("/").body
    assert f'<a href="{public}">{public}</a> — written by `newsletter archive`</p>' in before
    assert "/site/" not in before and view.respond("/site/2021-07/").status == 404

    assert samples.cli("archive").exit_code == 0
    view.changed([samples.root / SUMMARY_FILE])  # a new version: the index is built again
    after = view.respond("/").body
    assert '<a href="/site/2021-07/">local copy in site/</a>' in after
    page = view.respond("/site/2021-07/")
    assert page.status == 200 and page.body == (samples.root / "site" / "2021-07" / "index.html").read_text(
        encoding="utf-8"
    )
    assert view.respond("/site/feed.xml").content_type.startswith("application/atom+xml")
    # Only the built site is served, nothing beside it.
    assert view.respond("/site/../pyproject.toml").status == 404
    assert view.respond("/site/%2e%2e/issues/topics.yaml").status == 404


def test_a_drafts_index_says_it_is_not_in_the_archive(samples: Newsletter) -> None:
    meta = samples.root / "issues" / "2021-07" / "issue.md"
    meta.write_text(meta.read_text(encoding="utf-8").replace("status: ready", "status: draft"), encoding="utf-8")
    body = Preview(load_settings(samples.root), "2021-07").respond("/").body
    assert "— a draft is left out of the archive until its status is ready</p>" in body


def test_what_the_author_types_is_shown_as_text(samples: Newsletter) -> None:
    body = Preview(load_settings(samples.root), "2021-07").respond("/?topics=%3Cscript%3Ex%3C/script%3E").body
    assert "<script>x" not in body
    assert 'value="&lt;script&gt;x&lt;/script&gt;"' in body  # the form keeps what was asked
    assert "unknown topic &#39;&lt;script&gt;x&lt;/script&gt;&#39;" in body  # and the notice says why


# --- the command ----------------------------------------------------------------------------------


def test_cli_busy_port_is_a_clean_error(samples: Newsletter) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = samples.cli("preview", "2021-07", "--port", str(port), "--no-open")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: port {port} is already in use on 127.0.0.1: stop what is using it, "
        f"or choose another port with --port, e.g. --port {port + 1}\n"
    )
    assert result.stdout == ""


def test_cli_unknown_issue(samples: Newsletter) -> None:
    result = samples.cli("preview", "2099-01", "--no-open")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no issue '2099-01' in ")


def test_cli_serves_until_ctrl_c(samples: Newsletter) -> None:
    # A real process: Ctrl-C is SIGINT to the process, and the exit must be clean (code 0, no traceback).
    # SIGINT is reset to its default in the child: a shell ignores it for background jobs, and a
    # pytest started as one would pass that on, leaving Python no KeyboardInterrupt to raise.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsletter",
            "--root",
            str(samples.root),
            "preview",
            "2021-07",
            "--port",
            "0",
            "--no-open",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = process.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith("previewing 2021-07 at http://127.0.0.1:"), first
        url = first.split(" at ")[1].split()[0]
        assert get(url)[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert (process.returncode, out, err) == (0, "stopped\n", "")
