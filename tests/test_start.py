"""Starting a newsletter anywhere: `newsletter init`, `newsletter new`, packaged templates (issue 15)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.content.scaffold import next_month
from newsletter.settings import load_settings
from newsletter.web.preview import Preview

from conftest import Result, read_eml


def run(folder: Path, *args: str) -> Result:
    """The CLI in ``folder``, as an author who installed the tool would run it there (no --root)."""
    result = CliRunner().invoke(app, ["--root", str(folder), *args], catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def test_a_folder_that_is_not_a_newsletter_folder_says_so(tmp_path: Path) -> None:
    result = run(tmp_path, "check")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path} is not a newsletter folder (it has no issues/topics.yaml): "
        "start one with `newsletter init`\n"
    )


def test_init_then_check_build_preview_and_send_work_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "digest"
    made = run(tmp_path, "init", str(folder))
    assert made.exit_code == 0, made.stderr
    month = next_month(date.today())
    assert made.stdout.splitlines()[-1].startswith(f"next: cd {folder} && newsletter preview {month}")
    for path in (
        "issues/topics.yaml",
        "subscribers/readers.csv",
        ".env.example",
        ".gitignore",
        "templates/email.mjml.j2",
        "templates/web/home.html.j2",
        f"issues/{month}/issue.md",
    ):
        assert (folder / path).is_file(), path
    assert "status: draft" in (folder / "issues" / month / "issue.md").read_text()

    check = run(folder, "check")
    assert check.exit_code == 0 and check.stdout.endswith("1 issue checked: 0 errors, 0 warnings — ok\n"), check.stdout
    assert run(folder, "build", month).exit_code == 0
    assert (folder / "build" / month / "all.html").is_file()
    page = Preview(load_settings(folder), month).respond("/")
    assert page.status == 200 and "What the first study found" in page.body

    test = run(folder, "send", month, "--test", "me@example.org")  # a draft can be tried on oneself
    assert test.exit_code == 0, test.stderr
    meta = folder / "issues" / month / "issue.md"
    meta.write_text(meta.read_text().replace("status: draft", "status: ready"))
    sent = run(folder, "send", month, "--yes")
    assert sent.exit_code == 0, sent.stdout + sent.stderr
    (message,) = sorted((folder / "outbox" / month).glob("*.eml"))
    assert read_eml(message)["To"].addresses[0].addr_spec == "ana.silva@example.org"


def test_init_never_overwrites_unless_asked(tmp_path: Path) -> None:
    assert run(tmp_path, "init").exit_code == 0
    mine = tmp_path / "subscribers" / "readers.csv"
    mine.write_text("email,name,topics\nme@example.org,Me,all\n")
    again = run(tmp_path, "init")
    assert again.exit_code == 2
    assert (
        "already has .env.example, .gitignore," in again.stderr
        and "nothing was written (--force overwrites)" in again.stderr
    )
    assert mine.read_text() == "email,name,topics\nme@example.org,Me,all\n"
    assert run(tmp_path, "init", "--force").exit_code == 0
    assert mine.read_text().startswith("email,name,topics,status\n")


def test_new_starts_a_month_and_adds_summaries(tmp_path: Path) -> None:
    assert run(tmp_path, "init").exit_code == 0
    made = run(tmp_path, "new", "2031-05")
    assert made.exit_code == 0
    assert made.stdout.splitlines() == [
        "wrote issues/2031-05/issue.md",
        "wrote issues/2031-05/01-first-summary.md",
        "wrote issues/2031-05/02-second-summary.md",
    ]
    issue = (tmp_path / "issues" / "2031-05" / "issue.md").read_text()
    summary = (tmp_path / "issues" / "2031-05" / "01-first-summary.md").read_text()
    assert "status: draft" in issue and "# The subject line readers see" in issue
    for field in ("title:", "citation:", "doi:", "topics:", "research_type:", "## Practice Implications"):
        assert field in summary, field
    assert "APA 7" in summary and "`newsletter topics`" in summary  # each field says what it is for
    again = run(tmp_path, "new", "2031-05")
    assert again.exit_code == 2 and "issues/2031-05 already exists" in again.stderr
    added = run(tmp_path, "new", "--summary", "therapist-burnout")
    assert added.stdout == "wrote issues/2031-05/03-therapist-burnout.md\n"  # the newest issue
    twice = run(tmp_path, "new", "--summary", "therapist-burnout")
    assert twice.exit_code == 2 and "already has a summary with the slug 'therapist-burnout'" in twice.stderr
    bad = run(tmp_path, "new", "--summary", "Not A Slug")
    assert bad.exit_code == 2 and "is not a slug" in bad.stderr
    check = run(tmp_path, "check", "2031-05")
    assert check.exit_code == 0, check.stdout


def test_a_folder_without_templates_uses_the_packaged_ones_and_diff_shows_yours(tmp_path: Path) -> None:
    assert run(tmp_path, "init").exit_code == 0
    month = next_month(date.today())
    own = run(tmp_path, "build", month, "--out", str(tmp_path / "own"))
    assert own.exit_code == 0
    same = run(tmp_path, "templates", "diff")
    assert same.exit_code == 0 and same.stdout == "0 templates differ from the defaults\n"

    footer = tmp_path / "templates" / "_footer.mjml.j2"
    footer.write_text(footer.read_text().replace("</mj-section>", "</mj-section>\n<!-- mine -->", 1))
    (tmp_path / "templates" / "web" / "topic.html.j2").unlink()
    changed = run(tmp_path, "templates", "diff")
    assert changed.exit_code == 1
    assert "--- default/_footer.mjml.j2\n+++ templates/_footer.mjml.j2\n" in changed.stdout
    assert "+<!-- mine -->" in changed.stdout
    assert "templates/web/topic.html.j2: not in your folder, the packaged default is used" in changed.stdout
    assert changed.stdout.endswith("1 template differs from the defaults\n")

    shutil.rmtree(tmp_path / "templates")
    without = run(tmp_path, "build", month, "--out", str(tmp_path / "packaged"))
    assert without.exit_code == 0, without.stderr
    assert (tmp_path / "packaged" / "all.html").read_text() == (tmp_path / "own" / "all.html").read_text()
