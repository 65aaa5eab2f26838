"""``newsletter build``: every variant of an issue as files, to look at before sending.

For each non-empty selection of the issue's summaries it writes
``<key>.html`` and ``<key>.txt`` (``all``, ``01``, ``01+02``...), filled for a
sample reader with links as long as real ones, so the sizes are the sizes
readers get, plus an ``index.html`` linking them.

The folder is written next to its target and swapped in at the end: a failed
build leaves the previous one intact, never half of each.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter.content import Issue
from newsletter.errors import NewsletterError
from newsletter.render import GMAIL_CLIP_BYTES, SIZE_WARNING_BYTES, Renderer, Variant, preview, selections, size_of

INDEX = "index.html"
BUILT_SUFFIXES = {".html", ".txt"}


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
        if not self.is_html:
            return ""
        if self.size > GMAIL_CLIP_BYTES:
            return "clipped"
        return "close" if self.size > SIZE_WARNING_BYTES else "ok"


def variant_count(issue: Issue) -> int:
    return 2 ** len(issue.summaries) - 1


def build_issue(issue: Issue, renderer: Renderer, target: Path,
                progress: Callable[[Variant], None] = lambda v: None) -> list[BuiltFile]:
    """Render every variant of ``issue`` into ``target`` (replaced as a whole)."""
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a build is for opening and sharing
    try:
        built: list[BuiltFile] = []
        for selection in selections(issue):
            variant = renderer.render(issue, selection)
            page, text = preview(variant, renderer.settings.base_url)
            for suffix, content in ((".html", page), (".txt", text)):
                path = staging / f"{variant.key}{suffix}"
                path.write_text(content, encoding="utf-8", newline="\n")
                built.append(BuiltFile(target / path.name, size_of(content), variant))
            progress(variant)
        (staging / INDEX).write_text(index_page(issue, built), encoding="utf-8")
        swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return built


def _check_replaceable(target: Path) -> None:
    """Refuse to replace a folder that holds anything a build would not have written."""
    if not target.exists():
        return
    if not target.is_dir():
        raise NewsletterError(f"cannot build into {target}: it is a file")
    foreign = [p.name for p in target.iterdir() if p.is_dir() or p.suffix not in BUILT_SUFFIXES]
    if foreign:
        shown = ", ".join(sorted(foreign)[:3]) + (" ..." if len(foreign) > 3 else "")
        raise NewsletterError(f"refusing to replace {target}: it holds files a build did not write ({shown}); "
                              "choose another --out folder")


def swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` with the folder ``staging``, next to it."""
    # Two renames: the window where `target` is missing is tiny, and a
    # crash in it leaves both folders on disk, never a mixed one.
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def index_page(issue: Issue, built: list[BuiltFile]) -> str:
    """A plain HTML page linking every built file, with its size."""
    titles = {s.slug: s.title for s in issue.summaries}
    rows = []
    by_key: dict[str, list[BuiltFile]] = {}
    for item in built:
        by_key.setdefault(item.variant.key, []).append(item)
    for key, files in by_key.items():
        variant = files[0].variant
        summaries = "full issue" if variant.is_full else "; ".join(titles[s] for s in variant.slugs)
        links = " ".join(
            f'<a href="{html.escape(f.path.name)}">{html.escape(f.path.suffix[1:])}</a> '
            f'<span class="size {f.verdict}">{f.size / 1024:.1f} KB</span>' for f in files)
        rows.append(f"<tr><td><code>{html.escape(key)}</code></td><td>{html.escape(summaries)}</td><td>{links}</td></tr>")
    title = f"{issue.id}: {issue.subject}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{html.escape(title)} (build)</title>
<style>
body {{ font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; line-height: 1.5; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }}
.close {{ color: #9a3412; font-weight: 600; }} .clipped {{ color: #b91c1c; font-weight: 700; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{len(by_key)} variants, filled for a sample reader. Gmail clips HTML over {GMAIL_CLIP_BYTES // 1024} KB.</p>
<table>
<thead><tr><th>variant</th><th>summaries</th><th>files</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body>
</html>
"""
