"""Benchmark: render every variant of the largest sample issue.

    .venv/bin/python bench/render.py              # the largest issue under issues/, 7 runs
    .venv/bin/python bench/render.py --issue 2021-07 --runs 15

Prints plain lines: the first render of a fresh process (templates compiled,
cssutils warmed up), then medians over the runs of a whole ``build`` (every
variant rendered, filled for a sample reader and written) and of each
variant's render alone, then the per-reader cost of ``Variant.fill``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO, help="newsletter folder (default: the repository)")
    parser.add_argument("--issue", help="issue to render (default: the one with most summaries, then most text)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    t0 = time.perf_counter()
    from newsletter.content.workspace import Workspace
    from newsletter.errors import errors_in
    from newsletter.render.build import build_issue
    from newsletter.render.renderer import Renderer, fill_sample
    from newsletter.render.sizes import size_of
    from newsletter.settings import load_settings

    imported = time.perf_counter() - t0
    ws = Workspace(load_settings(args.root))
    if args.issue:
        issue = ws.load(args.issue)
    else:
        loaded = [ws.read(i) for i in ws.issue_ids()]
        issues = [r.issue for r in loaded if r.issue is not None and not errors_in(r.problems)]
        issue = max(
            issues, key=lambda i: (len(i.summaries), sum(len(s.body) + len(s.implications) for s in i.summaries))
        )

    t0 = time.perf_counter()
    renderer = Renderer(ws.settings)
    first = renderer.render(issue)
    cold = time.perf_counter() - t0
    chosen = list(issue.selections())
    print(f"issue {issue.id}: {len(issue.summaries)} summaries, {len(chosen)} variants; {args.runs} runs, medians")
    print(f"import newsletter.render etc.   {imported * 1000:8.1f} ms")
    print(f"first render (cold process)     {cold * 1000:8.1f} ms  (Renderer() + full issue)")

    builds: list[float] = []
    per_variant: dict[str, list[float]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            t0 = time.perf_counter()
            build_issue(issue, renderer, Path(tmp) / f"run{run}")
            builds.append(time.perf_counter() - t0)
            for selection in chosen:
                t0 = time.perf_counter()
                variant = renderer.render(issue, selection)
                per_variant.setdefault(variant.key, []).append(time.perf_counter() - t0)
                page, text = fill_sample(variant, ws.settings.base_url)
                sizes[variant.key] = (size_of(page), size_of(text))
    print(
        f"build, all {len(chosen)} variants          {statistics.median(builds) * 1000:8.1f} ms  "
        f"(min {min(builds) * 1000:.1f}, max {max(builds) * 1000:.1f})"
    )
    for key, times in per_variant.items():
        html, text = sizes[key]
        print(
            f"  render {key:<22} {statistics.median(times) * 1000:8.1f} ms  "
            f"html {html / 1024:5.1f} KB, text {text / 1024:4.1f} KB"
        )

    readers = 20_000
    t0 = time.perf_counter()
    for i in range(readers):
        first.fill(
            f"Reader {i}",
            f"{ws.settings.base_url}/unsubscribe/?t={i:022d}",
            f"{ws.settings.base_url}/preferences/?t={i:022d}",
        )
    fill = (time.perf_counter() - t0) / readers
    print(f"fill, per reader                {fill * 1e6:8.1f} µs  ({readers:,} readers, full issue)")


if __name__ == "__main__":
    main()
