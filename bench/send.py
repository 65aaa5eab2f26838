"""Benchmark: send an issue to many synthetic readers, phase by phase.

    .venv/bin/python bench/send.py                  # 100,000 readers, no-op backend; 10,000 through the outbox
    .venv/bin/python bench/send.py --readers 20000 --outbox-readers 0

Each backend runs in a fresh process so its peak memory (max RSS) is its own.
The no-op backend fills every reader's message, as a real one would, and
drops it: it measures our own overhead apart from the disk.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ISSUE = "2021-07"


def make_folder(root: Path, readers: int) -> None:
    """A newsletter folder with the sample issues and ``readers`` synthetic readers."""
    from newsletter.taxonomy import load_taxonomy

    shutil.copytree(REPO / "issues", root / "issues")
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "subscribers").mkdir()
    slugs = [t.slug for t in load_taxonomy(root / "issues" / "topics.yaml")]
    rng = random.Random(2021)
    with open(root / "subscribers" / "readers.csv", "w", encoding="utf-8") as out:
        out.write("email,name,topics,status\n")
        for i in range(readers):
            topics = "all" if rng.random() < 0.15 else ";".join(rng.sample(slugs, rng.randint(1, 4)))
            status = "unsubscribed" if rng.random() < 0.02 else "active"
            out.write(f"reader{i}@example{i % 97}.org,Reader {i},{topics},{status}\n")


def run_one(root: Path, backend_name: str) -> dict[str, object]:
    """Run one send in this process, timing each phase."""
    from newsletter.backends.null import NullBackend
    from newsletter.backends.outbox import OutboxBackend
    from newsletter.ledger import Ledger
    from newsletter.links import Links
    from newsletter.personalise import plan_audience
    from newsletter.render import Renderer
    from newsletter.send import Sender, send_issue
    from newsletter.settings import load_settings, with_sample_defaults
    from newsletter.subscribers import read_subscribers
    from newsletter.workspace import Workspace

    phases: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    settings, _ = with_sample_defaults(load_settings(root))
    ws = Workspace(settings)
    issue = ws.load(ISSUE)
    t = time.perf_counter()
    found = read_subscribers(settings.subscribers_dir, ws.taxonomy)
    phases["load+validate"] = time.perf_counter() - t
    t = time.perf_counter()
    audience = plan_audience(issue, found.subscribers)
    phases["group"] = time.perf_counter() - t

    backend = NullBackend() if backend_name == "null" else OutboxBackend(settings.outbox_dir)
    renderer = Renderer(settings)
    ledger = Ledger(settings.ledger_url)

    def timed(obj: object, name: str, phase: str) -> None:
        original = getattr(obj, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases[phase] += time.perf_counter() - t0

        setattr(obj, name, wrapper)

    for method in ("claim", "record_batch", "record", "record_skipped", "statuses", "settle_orphans",
                   "start_run", "finish_run", "heartbeat", "rows"):
        timed(ledger, method, "ledger")
    timed(renderer, "render", "render")
    timed(backend, "build", "send (build messages)")
    timed(backend, "post", "send (hand over)")
    sender = Sender(issue, backend, renderer, Links(settings), settings.from_address)
    t = time.perf_counter()
    report = send_issue(sender, audience, ledger)
    send_total = time.perf_counter() - t
    total = time.perf_counter() - start
    return {
        "backend": backend_name, "readers": len(found.subscribers), "sent": report.sent,
        "variants": len(report.variants), "skipped": sum(report.skipped.values()), "failed": len(report.failed),
        "total_s": total, "send_loop_s": send_total, "phases": dict(phases),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--outbox-readers", type=int, default=10_000)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(Path(args.child[0]), args.child[1])))
        return
    for backend, readers in (("null", args.readers), ("outbox", args.outbox_readers)):
        if not readers:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "nl"
            make_folder(root, readers)
            out = subprocess.run([sys.executable, __file__, "--child", str(root), backend],
                                 capture_output=True, text=True, check=True).stdout
        result = json.loads(out)
        print(f"backend {backend}: {result['readers']:,} readers, {result['sent']:,} sent in "
              f"{result['variants']} variants, {result['skipped']:,} skipped, {result['failed']} failed")
        print(f"  total {result['total_s']:.2f} s ({result['sent'] / result['total_s']:,.0f} readers/s), "
              f"peak memory {result['peak_rss_mb']:.0f} MB")
        for phase, seconds in result["phases"].items():
            print(f"  {phase:<24} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
