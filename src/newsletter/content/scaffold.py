"""Starting things: a newsletter folder (``newsletter init``) and an issue or a summary (``newsletter new``).

What is written is a skeleton that already passes ``check`` (as a draft), so
``preview`` shows it at once; each field carries a comment saying what it is
for. Nothing existing is ever overwritten unless asked (``force``), and a
refusal names every file in the way.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from newsletter import defaults
from newsletter.content.model import ISSUE_FILE, ISSUE_NAME, SUMMARY_NAME
from newsletter.content.taxonomy import Taxonomy, load_taxonomy
from newsletter.errors import ConfigError

TOPICS_FILE = "topics.yaml"
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

GITIGNORE = """\
# What `newsletter` writes beside the sources: rebuilt or kept elsewhere.
build/
outbox/
state/
site/
.env
"""

READERS_CSV = """\
email,name,topics,status
ana.silva@example.org,Ana Silva,all,active
"""

ISSUE_MD = """\
---
# The subject line readers see in their inbox.
subject: "{subject}"
# One sentence under the header; inboxes show it as the preview.
intro: "This month: two new studies for practising therapists."
# draft while you write; ready when it may go out (on the 1st of {month}, or with `newsletter send`).
status: draft
# Optional: another time than the 1st of the month, e.g.
# send_at: {year}-{mm}-03T08:00:00+01:00
---
An optional editor's note, in Markdown. Delete this paragraph if you have none.
"""

SUMMARY_MD = """\
---
# The summary's headline: your words for what the study found.
title: "{title}"
# The article in APA 7 style: Authors. (Year). Title. Journal, volume(issue), pages.
citation: "Surname, A. B., & Other, C. D. (2021). Title of the article. Journal Name, 58(1), 1–10."
# The article's DOI, so readers can find it (or `url: https://...` for one without a DOI).
doi: "10.1037/pst0000000"
# One or more topics from `newsletter topics` (its name, slug or an alias).
topics:
  - {topic}
# Optional: the kind of study.
research_type: "Randomized controlled trial"
---
Write the summary here, in Markdown: who was studied, how, and what was found.
*Emphasis*, lists and [links](https://doi.org/10.1037/pst0000000) work in the email and the archive.

## Practice Implications

What this means for a therapist's practice.
"""


@dataclass
class Written:
    """What a scaffold wrote, relative to its folder."""

    root: Path
    files: list[Path] = field(default_factory=list)


def init_folder(root: Path, *, force: bool = False, today: date | None = None) -> Written:
    """Make ``root`` a working newsletter folder, with one example draft issue for next month."""
    month = next_month(today or date.today())
    plan: dict[Path, bytes] = {
        Path("issues") / TOPICS_FILE: defaults.TOPICS.read_bytes(),
        Path("subscribers") / "readers.csv": READERS_CSV.encode(),
        Path(".env.example"): defaults.ENV_EXAMPLE.read_bytes(),
        Path(".gitignore"): GITIGNORE.encode(),
    }
    for template in sorted(p for p in defaults.TEMPLATES.rglob("*") if p.is_file()):
        plan[Path("templates") / template.relative_to(defaults.TEMPLATES)] = template.read_bytes()
    first_topic = next(iter(load_taxonomy(defaults.TOPICS))).name
    plan.update({Path("issues") / month / name: text.encode() for name, text in _issue_files(month, first_topic)})
    return _write_all(root, plan, force=force)


def new_issue(issues_dir: Path, taxonomy: Taxonomy, month: str | None = None, today: date | None = None) -> Written:
    """``issues/YYYY-MM/`` with ``issue.md`` and two summary skeletons; refuses an existing month."""
    month = month or next_month(today or date.today())
    if not ISSUE_NAME.match(month):
        raise ConfigError(f"{month!r} is not a month: issues are named YYYY-MM, e.g. 2030-01")
    if (issues_dir / month).exists():
        raise ConfigError(
            f"issues/{month} already exists: edit it, or add a summary with `newsletter new --summary SLUG`"
        )
    topic = next(iter(taxonomy)).name
    plan = {Path(month) / name: text.encode() for name, text in _issue_files(month, topic)}
    return _write_all(issues_dir, plan)


def new_summary(issues_dir: Path, taxonomy: Taxonomy, slug: str, issue_id: str) -> Written:
    """One more ``NN-slug.md`` in issue ``issue_id``, numbered after the last one."""
    if not SLUG.match(slug):
        raise ConfigError(f"{slug!r} is not a slug: lower-case words joined by hyphens, e.g. therapist-empathy")
    folder = issues_dir / issue_id
    taken = [SUMMARY_NAME.match(p.name) for p in folder.iterdir()]
    numbers = [int(m.group(1)) for m in taken if m]
    if any(m.group(2) == slug for m in taken if m):
        raise ConfigError(f"issues/{issue_id} already has a summary with the slug {slug!r}")
    name = f"{max(numbers, default=0) + 1:02d}-{slug}.md"
    title = slug.replace("-", " ").capitalize()
    text = SUMMARY_MD.format(title=title, topic=next(iter(taxonomy)).name)
    return _write_all(issues_dir, {Path(issue_id) / name: text.encode()})


def next_month(today: date) -> str:
    return f"{today.year + today.month // 12}-{today.month % 12 + 1:02d}"


def _issue_files(month: str, topic: str) -> list[tuple[str, str]]:
    year, mm = month.split("-")
    label = date(int(year), int(mm), 1).strftime("%B %Y")
    return [
        (ISSUE_FILE, ISSUE_MD.format(subject=f"New research for therapists, {label}", month=label, year=year, mm=mm)),
        ("01-first-summary.md", SUMMARY_MD.format(title="What the first study found", topic=topic)),
        ("02-second-summary.md", SUMMARY_MD.format(title="What the second study found", topic=topic)),
    ]


def _write_all(root: Path, plan: dict[Path, bytes], *, force: bool = False) -> Written:
    """Write every file of ``plan`` under ``root``, or none if any exists (unless ``force``)."""
    existing = sorted(str(path) for path in plan if (root / path).exists())
    if existing and not force:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise ConfigError(f"{root} already has {shown}: nothing was written (--force overwrites)")
    written = Written(root)
    for path, data in plan.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        target.write_bytes(data)
        written.files.append(path)
    return written
