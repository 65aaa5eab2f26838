"""The layout's rules, checked: small modules, public names across modules, one reading per command (issue 10).

The direction of imports between packages is import-linter's job (`lint-imports`, run by .ci/run).
"""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.content import sources
from newsletter.schedule.policy import RUN_NOW
from newsletter.schedule.runner import Outcome, run_once
from newsletter.settings import load_settings

from conftest import REPO, Newsletter

PACKAGE = REPO / "src" / "newsletter"
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_module_imports_a_private_name_of_another() -> None:
    found = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("newsletter"):
                found += [
                    f"{path.relative_to(PACKAGE)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert found == []


def test_every_package_says_what_it_does_and_what_it_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, f"{init.parent.name}/__init__.py has no docstring"
        assert "import" in doc.lower(), f"{init.parent.name}/__init__.py does not say what it may import"


def test_a_scheduled_send_reads_the_issue_folder_once(newsletter: Newsletter, monkeypatch: pytest.MonkeyPatch) -> None:
    newsletter.issue("2030-01")
    newsletter.subscribers("a@example.org,A,all,\n")
    parsed: list[str] = []
    real = sources.parse_source

    def counting(path: Path) -> tuple[sources.Source | None, list[object]]:
        parsed.append(path.name)
        return real(path)  # type: ignore[return-value]

    monkeypatch.setattr(sources, "parse_source", counting)
    monkeypatch.setattr("newsletter.content.loader.parse_source", counting)
    report = run_once(load_settings(newsletter.root), datetime(2030, 1, 1, 9, tzinfo=ZoneInfo("UTC")), kind=RUN_NOW)
    assert [run.outcome for run in report.issues] == [Outcome.SENT]
    assert sorted(parsed) == ["01-empathy.md", "02-burnout.md", "issue.md"]  # each file once
