"""The command line, through the real entry point, with exact expectations."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from newsletter.cli import app

from conftest import GOOD_SUMMARY, REPO, Newsletter


def test_check_clean_issue(newsletter: Newsletter) -> None:
    newsletter.issue()
    result = newsletter.cli("check", "2030-01")
    assert result.exit_code == 0
    assert result.stdout == "issue 2030-01 checked: 0 errors, 0 warnings — ok\n"


def test_check_prints_every_problem_then_summary_and_fails(newsletter: Newsletter) -> None:
    newsletter.issue(
        summaries={
            "01-a.md": GOOD_SUMMARY.replace("  - Empathy\n", "  - Empathie\n"),
            "02-b.md": GOOD_SUMMARY.replace("Therapist Empathy", "B").replace("Smith and", "Smyth and"),
        }
    )
    result = newsletter.cli("check", "2030-01")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "issues/2030-01/01-a.md:6: error: unknown topic 'Empathie'; did you mean 'Empathy'?",
        "issues/2030-01/02-b.md:9: warning: 'Smyth and colleagues' does not match the first author 'Smith' of the citation",
        "issue 2030-01 checked: 1 error, 1 warning — FAILED",
    ]


def test_check_refuses_two_summaries_with_one_slug(newsletter: Newsletter) -> None:
    # Their archive pages and their #anchors in the email would collide.
    newsletter.issue(
        summaries={"01-empathy.md": GOOD_SUMMARY, "02-empathy.md": GOOD_SUMMARY.replace("Therapist Empathy", "Other")}
    )
    result = newsletter.cli("check", "2030-01")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "issues/2030-01/02-empathy.md:1: error: slug 'empathy' is also the slug of 01-empathy.md: "
        "each summary needs its own URL (rename one file)",
        "issue 2030-01 checked: 1 error, 0 warnings — FAILED",
    ]


def test_check_only_warnings_exits_zero(newsletter: Newsletter) -> None:
    newsletter.issue(summaries={"01-a.md": GOOD_SUMMARY})
    result = newsletter.cli("check")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "1 issue checked: 0 errors, 1 warning — ok"


def test_check_unknown_issue_is_a_clean_error(newsletter: Newsletter) -> None:
    newsletter.issue()
    result = newsletter.cli("check", "2030-1")
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"error: no issue '2030-1' in {newsletter.root}/issues. Issues are named YYYY-MM. Known: 2030-01\n"
    )


def test_bad_setting_is_named_with_where_to_set_it(newsletter: Newsletter) -> None:
    newsletter.write(".env", "NEWSLETTER_TIMEZONE=Mars/Olympus\n")
    result = newsletter.cli("issues")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: invalid setting NEWSLETTER_TIMEZONE: 'Mars/Olympus' is not an IANA time zone name "
        f"such as Europe/London (set in the environment or {newsletter.root}/.env)\n"
    )


def test_environment_beats_dotenv(newsletter: Newsletter) -> None:
    newsletter.issue()
    newsletter.write(".env", "NEWSLETTER_TIMEZONE=Mars/Olympus\nNEWSLETTER_SEND_TIME=07:15\n")
    result = newsletter.cli("issues", env={"NEWSLETTER_TIMEZONE": "Europe/Oslo", "COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "2030-01-01T07:15+01:00" in result.stdout


def test_issues_lists_status_count_and_send_date(samples: Newsletter) -> None:
    result = samples.cli("issues", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in result.stdout.splitlines()
        if line.startswith("│ 20")
    }
    assert list(rows) == ["2021-03", "2021-05", "2021-06", "2021-07", "2021-08"]
    assert rows["2021-07"][1:4] == ["ready", "2", "2021-07-01T09:00+00:00"]
    assert rows["2021-03"][1] == "draft" and rows["2021-03"][4] == "1 error"


def test_topics_lists_taxonomy(samples: Newsletter) -> None:
    result = samples.cli("topics", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "36 topics (a reader may also choose 'all')" in result.stdout
    assert "│ adherence " in result.stdout and "Adherance" in result.stdout


def test_root_from_environment_and_real_entry_point(samples: Newsletter) -> None:
    env = samples.env()
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", "check", "2021-08"], capture_output=True, text=True, env=env, cwd="/"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("issue 2021-08 checked: 0 errors")
    assert "Traceback" not in proc.stderr


def commands() -> list[tuple[str, ...]]:
    """Every command and subcommand of the app, as the words that name it (the app itself is ``()``)."""
    import typer.main

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    return list(walk(typer.main.get_command(app), ()))


def test_the_command_tree_is_the_documented_one() -> None:
    # So that the help test below cannot pass by finding no commands.
    assert {"check", "send", "schedule", "subscribers check", "subscribers list", "suppressions sync"} <= {
        " ".join(path) for path in commands()
    }


@pytest.mark.parametrize("path", commands(), ids=lambda path: " ".join(path) or "newsletter")
def test_every_command_and_option_has_help(path: tuple[str, ...]) -> None:
    import typer.main

    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    assert command.help and len(command.help) > 10, "the command has no help text"
    for param in command.params:
        assert getattr(param, "help", None), f"{param.name} has no help text"
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="newsletter")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: newsletter {' '.join(path)}".rstrip())
    assert " ".join(command.help.split()[:4]) in " ".join(result.output.split())


def test_env_example_documents_every_setting() -> None:
    from newsletter.settings import Settings, _env_name

    text = (REPO / ".env.example").read_text(encoding="utf-8")
    for field in Settings.model_fields:
        if field == "root":
            assert "NEWSLETTER_ROOT" in text
            continue
        assert _env_name(field) + "=" in text, _env_name(field)


def test_audience_shows_variants_and_skipped(samples: Newsletter) -> None:
    result = samples.cli("audience", "2021-07", env={"COLUMNS": "120"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "audience of 2021-07: 5 readers in 3 variants"
    assert any(line.startswith("│ all ") and line.rstrip().endswith("│ 2       │") for line in lines)
    assert "skipped: 5 (no summary matches their topics)" in lines
    assert "skipped: 1 (unsubscribed)" in lines and "skipped: 1 (bounced)" in lines
