"""``newsletter build``: every variant of an issue as files, to look at before sending.

For each non-empty selection of the issue's summaries it writes
``<key>.html`` and ``<key>.txt`` (``all``, ``01``, ``01+02``...), filled for a
sample reader with links as long as real ones, so the sizes are the sizes
readers get, plus an ``index.html`` linking them.

The folder is written next to its target and swapped in at the end: a failed
build leaves the previous one intact, never half of each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter.content.model import Issue
from newsletter.errors import NewsletterError
from newsletter.render.environment import make_environment, render_template
from newsletter.render.renderer import Renderer, fill_sample
from newsletter.render.sizes import GMAIL_CLIP_BYTES, size_of, verdict
from newsletter.render.variant import Variant
from newsletter.support.files import staged_folder

INDEX = "index.html"
# Written into every build: only a folder holding it (or an empty one) is
# ever replaced, so `--out ~/Documents` cannot wipe a user's own .html files.
MARKER = ".newsletter-build"
# What builds wrote before they had a marker: variant keys (all, 01, 01+03) and the index.
_OLD_BUILD_FILE = re.compile(r"^(?:all|\d\d(?:\+\d\d)*)\.(?:html|txt)$|^index\.html$")
# Pages of the tool's own (not the author's): shipped inside the package.
PACKAGE_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class BuiltFile:
    """One written file and its size in bytes (UTF-8, as sent)."""

    path: Path
    size: int
    variant: Variant

    @property
    def is_html(self) -> bool:
        return self.path.suffix == ".html"

    @property
    def verdict(self) -> str:
        """Against Gmail's clipping limit: ok, close, or clipped (HTML only)."""
        return verdict(self.size) if self.is_html else ""


def variant_count(issue: Issue) -> int:
    return int(2 ** len(issue.summaries)) - 1


def build_issue(
    issue: Issue, renderer: Renderer, target: Path, progress: Callable[[Variant], None] = lambda v: None
) -> list[BuiltFile]:
    """Render every variant of ``issue`` into ``target`` (replaced as a whole)."""
    _check_replaceable(target)
    built: list[BuiltFile] = []
    with staged_folder(target) as staging:
        for selection in issue.selections():
            variant = renderer.render(issue, selection)
            page, text = fill_sample(variant, renderer.settings.base_url)
            for suffix, content in ((".html", page), (".txt", text)):
                path = staging / f"{variant.key}{suffix}"
                path.write_text(content, encoding="utf-8", newline="\n")
                built.append(BuiltFile(target / path.name, size_of(content), variant))
            progress(variant)
        (staging / INDEX).write_text(index_page(issue, built), encoding="utf-8")
        (staging / MARKER).write_text("Built by `newsletter build`; the whole folder is replaced on every build.\n")
    return built


def _check_replaceable(target: Path) -> None:
    """Refuse to replace a folder that holds anything a build would not have written."""
    if not target.exists():
        return
    if not target.is_dir():
        raise NewsletterError(f"cannot build into {target}: it is a file")
    if (target / MARKER).is_file():
        return
    foreign = [p.name for p in target.iterdir() if not (p.is_file() and _OLD_BUILD_FILE.match(p.name))]
    if foreign:
        shown = ", ".join(sorted(foreign)[:3]) + (" ..." if len(foreign) > 3 else "")
        raise NewsletterError(
            f"refusing to replace {target}: it holds files a build did not write ({shown}); choose another --out folder"
        )


def index_page(issue: Issue, built: list[BuiltFile]) -> str:
    """A plain HTML page linking every built file, with its size."""
    titles = {s.slug: s.title for s in issue.summaries}
    by_key: dict[str, list[BuiltFile]] = {}
    for item in built:
        by_key.setdefault(item.variant.key, []).append(item)
    rows = [
        {
            "key": key,
            "files": files,
            "summaries": "full issue"
            if files[0].variant.is_full
            else "; ".join(titles[s] for s in files[0].variant.slugs),
        }
        for key, files in by_key.items()
    ]
    context = {"title": f"{issue.id}: {issue.subject}", "rows": rows, "clip_kb": GMAIL_CLIP_BYTES // 1024}
    return render_template(make_environment(PACKAGE_TEMPLATES), "build-index.html.j2", context, PACKAGE_TEMPLATES)
