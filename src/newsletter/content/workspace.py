"""The newsletter folder: settings, taxonomy and issues found under one root.

A Workspace lives as long as one command (or one scheduled run, or one
preview snapshot) and reads each issue folder once: ``check``, ``read`` and
``load`` share one reading, so a command never parses a folder twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from newsletter.content.checks import Checked, check_folder
from newsletter.content.loader import issue_folders
from newsletter.content.model import ISSUE_NAME, Issue, Loaded
from newsletter.content.taxonomy import Taxonomy, load_taxonomy
from newsletter.errors import ContentError, IssueNotFound
from newsletter.settings import Settings

TOPICS_FILE = "topics.yaml"


@dataclass
class Workspace:
    """Everything the commands need, loaded once and on demand."""

    settings: Settings
    _checked: dict[str, Checked] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> Path:
        return self.settings.root

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return load_taxonomy(self.settings.issues_dir / TOPICS_FILE)

    def issue_ids(self) -> list[str]:
        return [p.name for p in issue_folders(self.settings.issues_dir)]

    def folder(self, issue_id: str) -> Path:
        """The folder of issue ``issue_id`` (e.g. ``2021-07``), which must exist."""
        folder = self.settings.issues_dir / issue_id
        if "/" in issue_id or "\\" in issue_id or not folder.is_dir():
            known = ", ".join(self.issue_ids()) or "none yet"
            hint = "" if ISSUE_NAME.match(issue_id) else " Issues are named YYYY-MM."
            raise IssueNotFound(f"no issue {issue_id!r} in {self.settings.issues_dir}.{hint} Known: {known}")
        return folder

    def check(self, issue_id: str) -> Checked:
        """Everything ``newsletter check`` says about an issue, and the issue it loaded (read once)."""
        if issue_id not in self._checked:
            self._checked[issue_id] = check_folder(self.folder(issue_id), self.taxonomy)
        return self._checked[issue_id]

    def read(self, issue_id: str) -> Loaded:
        """The issue as far as it loads, and every problem (``check``'s reading)."""
        checked = self.check(issue_id)
        return Loaded(checked.loaded, checked.problems)

    def load(self, issue_id: str) -> Issue:
        """The issue, which must have no errors (ContentError otherwise)."""
        checked = self.check(issue_id)
        if checked.issue is None:
            raise ContentError(f"issue {issue_id} has errors; run `newsletter check {issue_id}`", checked.errors)
        return checked.issue

    def latest_id(self) -> str:
        ids = self.issue_ids()
        if not ids:
            raise IssueNotFound(f"no issues in {self.settings.issues_dir}")
        return ids[-1]
