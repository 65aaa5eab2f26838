"""Benchmark: rebuild the web archive of a synthetic newsletter folder.

    .venv/bin/python bench/archive.py                  # 60 issues of 3 summaries, 7 runs
    .venv/bin/python bench/archive.py --issues 120 --runs 5

Writes a temporary newsletter folder (the repository's taxonomy and
templates; summaries as long as the samples, with citations, DOIs and
topics), then times whole rebuilds as ``newsletter archive`` does them:
reading every issue, rendering, writing, swapping the site into place. Prints
plain lines: medians over the runs, the reading part alone, and a floor: the
same files written with no rendering at all (mkdir, write, swap, delete the
old tree), which is what the disk alone costs.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARAGRAPH = (
    "Therapists in {n} clinics rated {topic} after every session, and patients reported outcomes "
    "at intake, termination and follow-up. The effect was small (r = .{n}) but held across "
    "orientations, settings and levels of experience; *most* patients improved. "
) * 3


def write_folder(root: Path, issues: int, per_issue: int) -> None:
    """A newsletter folder with ``issues`` ready issues of ``per_issue`` summaries each."""
    import yaml

    (root / "issues").mkdir(parents=True)
    shutil.copy(REPO / "issues" / "topics.yaml", root / "issues" / "topics.yaml")
    shutil.copytree(REPO / "templates", root / "templates")
    topics = [t["name"] for t in yaml.safe_load((REPO / "issues" / "topics.yaml").read_text())["topics"]]
    rng = random.Random(7)
    for i in range(issues):
        year, month = 2016 + i // 12, i % 12 + 1
        folder = root / "issues" / f"{year}-{month:02d}"
        folder.mkdir()
        (folder / "issue.md").write_text(
            f'---\nsubject: "Issue {i}: research digest"\nintro: "This month I blog about study {i}."\n'
            f"status: ready\n---\nA short editor's note for issue {i}.\n",
            encoding="utf-8",
        )
        for n in range(1, per_issue + 1):
            chosen = rng.sample(topics, 3)
            listed = "".join(f"  - {t}\n" for t in chosen)
            body = "\n\n".join(PARAGRAPH.format(n=10 + n, topic=t.lower()) for t in chosen)
            (folder / f"0{n}-study-{n}.md").write_text(
                f'---\ntitle: "Study {n} of issue {i}"\n'
                f'citation: "Author, A., Bauer, B. C., & Cole, D. ({year}). Study {n} of issue {i}: a naturalistic '
                f'trial. Journal of Psychotherapy Research, {i + 1}({n}), {n * 10}–{n * 10 + 9}."\n'
                f'doi: "10.1000/jpr.{year}.{i}.{n}"\ntopics:\n{listed}research_type: "Naturalistic study"\n---\n'
                f"{body}\n\n## Practice Implications\n\n{PARAGRAPH.format(n=n, topic='the alliance')}\n",
                encoding="utf-8",
            )


def copy_tree(files: dict[Path, bytes], target: Path) -> None:
    """Write ``files`` as ``build_site`` does: into a staging folder swapped in, the old one deleted."""
    staging = Path(tempfile.mkdtemp(dir=target.parent))
    for relative, data in files.items():
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        (staging / relative).write_bytes(data)
    old = target.with_name(target.name + ".old")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=60)
    parser.add_argument("--summaries", type=int, default=3, help="per issue")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    t0 = time.perf_counter()
    from newsletter.content.workspace import Workspace
    from newsletter.settings import load_settings
    from newsletter.web import archive

    imported = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "newsletter"
        write_folder(root, args.issues, args.summaries)
        settings = load_settings(root)
        rebuilds: list[float] = []
        reads: list[float] = []
        built = None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            # A fresh Workspace per run, as each `newsletter archive` process has.
            found = archive.collect(Workspace(settings))
            reads.append(time.perf_counter() - t0)
            built = archive.build_site(found, settings, root / "site")
            rebuilds.append(time.perf_counter() - t0)
        assert built is not None
        size = sum(p.stat().st_size for p in (root / "site").rglob("*") if p.is_file())
        print(
            f"archive of {built.issues} issues, {built.summaries} summaries, {built.topics} topics: "
            f"{built.pages} pages, {built.feeds} feeds, {size / 1024:.0f} KB; {args.runs} runs, medians"
        )
        print(f"import newsletter.web.archive etc.  {imported * 1000:8.1f} ms")
        print(
            f"rebuild (read, render, write)   {statistics.median(rebuilds) * 1000:8.1f} ms  "
            f"(min {min(rebuilds) * 1000:.1f}, max {max(rebuilds) * 1000:.1f})"
        )
        print(f"  of which reading the issues   {statistics.median(reads) * 1000:8.1f} ms")
        files = {p.relative_to(root / "site"): p.read_bytes() for p in (root / "site").rglob("*") if p.is_file()}
        floors = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            copy_tree(files, root / "floor")
            floors.append(time.perf_counter() - t0)
        print(f"  floor: the same files, no rendering {statistics.median(floors) * 1000:5.1f} ms")
        home = (root / "site" / "index.html").stat().st_size
        print(f"home page                       {home / 1024:8.1f} KB")


if __name__ == "__main__":
    main()
