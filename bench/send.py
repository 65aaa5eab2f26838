"""Benchmark: send an issue to many synthetic readers, phase by phase.

    .venv/bin/python bench/send.py                  # 100,000 readers: no-op and SendGrid; 10,000 through the outbox
    .venv/bin/python bench/send.py --readers 20000 --outbox-readers 0 --no-sendgrid
    .venv/bin/python bench/send.py --database-url 'postgresql://me@/postgres?host=/var/run/postgresql'
    .venv/bin/python bench/send.py --readers 100000,1000000 --outbox-readers 0 --no-noop  # the scaling targets
    .venv/bin/python bench/send.py --outbox-readers 0 --latency 100 --connections 2  # 100 ms requests, two at once

SendGrid mode talks to the fake SendGrid of the tests (tests/fake_sendgrid.py),
started in its own process on 127.0.0.1, and also measures (a) the floor:
POSTing the same pre-built payloads and nothing else, and (b) the naive
design: render and POST per reader, on a 2,000-reader sample, extrapolated.

Each backend runs in a fresh process so its peak memory (max RSS) is its own,
on a database made beforehand (see ``make_database``): a SQLite file in the
folder, or with ``--database-url`` a scratch PostgreSQL database created on
that server for each backend and dropped after it (the URL's role must be
allowed to create databases).
The no-op backend fills every reader's message, as a real one would, and
drops it: it measures our own overhead apart from the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Three summaries, like a full month of the blog: July 2021's two and
# August's one, so readers fall into 7 variants.
ISSUE = "2021-09"


def make_folder(root: Path, readers: int) -> None:
    """A newsletter folder with the sample issues and ``readers`` synthetic readers."""
    from newsletter.content.taxonomy import load_taxonomy

    shutil.copytree(REPO / "issues", root / "issues")
    shutil.copytree(root / "issues" / "2021-07", root / "issues" / ISSUE)
    shutil.copy(
        root / "issues" / "2021-08" / "01-patients-crying.md", root / "issues" / ISSUE / "03-patients-crying.md"
    )
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
    make_database(root)


def make_database(root: Path) -> None:
    """Create the database beforehand, as any earlier command would have: the figures are a send's.

    Its very first opening (creating the tables with Alembic's migrations)
    costs ~0.1 s and ~10 MB once in a database's life; a send finds it made.
    """
    from newsletter.delivery.ledger import Ledger
    from newsletter.settings import load_settings, with_sample_defaults

    settings, _ = with_sample_defaults(load_settings(root))
    Ledger(settings.ledger_url).close()


def first_sync(root: Path) -> dict[str, float]:
    """Sync the subscriber files into the database, as the first command after they change does (own process)."""
    from newsletter.content.workspace import Workspace
    from newsletter.delivery.ledger import Ledger
    from newsletter.delivery.readers import reader_store
    from newsletter.settings import load_settings, with_sample_defaults

    settings, _ = with_sample_defaults(load_settings(root))
    ws = Workspace(settings)
    with Ledger(settings.ledger_url) as ledger:
        store = reader_store(settings, ledger.engine)
        t = time.perf_counter()
        store.refresh(settings.subscribers_dir, ws.taxonomy)
        took = time.perf_counter() - t
        store.close()
    return {"seconds": took, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


@contextmanager
def scratch_database(server: str | None) -> Iterator[str | None]:
    """A new PostgreSQL database on ``server`` (a URL), dropped afterwards; None: SQLite in the folder."""
    if not server:
        yield None
        return
    from sqlalchemy import create_engine, make_url

    url = make_url(server)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"newsletter_bench_{os.getpid()}_{time.monotonic_ns()}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run_one(root: Path, backend_name: str) -> dict[str, object]:
    """Run one send in this process, timing each phase (SendGrid: env points at the fake)."""
    from newsletter.content.workspace import Workspace
    from newsletter.delivery.backends.null import NullBackend
    from newsletter.delivery.backends.outbox import OutboxBackend
    from newsletter.delivery.ledger import Ledger
    from newsletter.delivery.links import Links
    from newsletter.delivery.send import Sender, plan, send_issue
    from newsletter.render.renderer import Renderer
    from newsletter.settings import load_settings, with_sample_defaults

    phases: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    settings, _ = with_sample_defaults(load_settings(root))
    ws = Workspace(settings)
    issue = ws.load(ISSUE)
    ledger = Ledger(settings.ledger_url)
    # As `send` plans: the files found unchanged since their sync, the readers counted per variant by the database.
    t = time.perf_counter()
    audience, _ = plan(ws, issue, engine=ledger.engine)
    phases["plan"] = time.perf_counter() - t

    from newsletter.delivery.backends import select_backend

    backend = {
        "null": NullBackend,
        "outbox": lambda: OutboxBackend(settings.outbox_dir),
        "sendgrid": lambda: select_backend(settings),
    }[backend_name]()
    renderer = Renderer(settings)

    def timed(obj: object, name: str, phase: str) -> None:
        original = getattr(obj, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases[phase] += time.perf_counter() - t0

        setattr(obj, name, wrapper)

    for method in (
        "enqueue",
        "claim",
        "record_batch",
        "record_failed",
        "record_skipped",
        "settle_orphans",
        "start_run",
        "finish_run",
        "rows",
    ):
        timed(ledger, method, f"ledger.{method}" if os.environ.get("BENCH_DETAIL") else "ledger")
    timed(renderer, "render", "render")
    timed(backend, "build", "send (build messages)")
    timed(backend, "post", "send (hand over)")
    sender = Sender(
        issue, backend, renderer, Links(settings), settings.from_address, connections=settings.send_connections
    )
    for selection in audience.groups:  # as `send` does before the send loop (timed as "render")
        sender.variant(selection)
    t = time.perf_counter()
    report = send_issue(sender, audience, ledger)
    send_total = time.perf_counter() - t
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the send's; the baselines' memory is theirs
    measured = dict(phases)  # the baselines below must not count as our phases
    extra: dict[str, object] = {}
    if backend_name == "sendgrid":
        extra = sendgrid_baselines(backend, sender, ledger)
    return {
        **extra,
        "backend": backend_name,
        "readers": audience.recipients + sum(audience.skipped.values()),
        "sent": report.sent,
        "variants": len(report.variants),
        "skipped": sum(report.skipped.values()),
        "failed": len(report.failed),
        "total_s": total,
        "send_loop_s": send_total,
        "phases": measured,
        "peak_rss_mb": peak,
    }


def sendgrid_baselines(backend, sender, ledger) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The floor (POST the same payloads) and the naive design (render + POST per reader).

    The floor's payloads are the send's own batches, made again from the
    ledger one at a time (kept during the send, they would have counted in
    its memory); only the POSTs are timed.
    """
    from sqlalchemy import select

    from newsletter.audience.personalise import Addressee, Routes
    from newsletter.audience.store import ReaderStore
    from newsletter.db.schema import deliveries
    from newsletter.delivery import answers
    from newsletter.delivery.readers import addressees, issue_readers

    client = backend._client.client
    store = ReaderStore(ledger.engine, sender.links.token)
    variants = {v.key: v for v in sender._variants.values()}
    with ledger.engine.connect() as conn:
        batches = conn.execute(
            select(deliveries.c.batch_id, deliveries.c.variant)
            .select_from(answers.joined())
            .where(deliveries.c.issue_id == sender.issue.id, answers.status() == "sent")
            .group_by(deliveries.c.batch_id, deliveries.c.variant)
        ).all()
    floor = 0.0
    for batch_id, variant in batches:
        with ledger.engine.connect() as conn:
            keys = conn.execute(select(deliveries.c.email).where(deliveries.c.batch_id == batch_id)).scalars().all()
        recipients = [sender.recipient(r) for r in addressees(store, keys).values()]
        payload = backend.build(sender.envelope(variants[variant], batch_id), recipients)
        t = time.perf_counter()
        client.mail.send.post(request_body=payload)
        floor += time.perf_counter() - t
    routes, readers = Routes(sender.issue), []
    store = ReaderStore(ledger.engine, sender.links.token)
    for key, email, name, topics, status, suppressed, _, _ in next(issue_readers(store, "naive", 4000)).rows:
        selection = routes.route(topics, status, suppressed)
        if not isinstance(selection, str) and len(readers) < 2000:
            readers.append((selection, Addressee(key, email, name)))
    store.close()
    t = time.perf_counter()
    for selection, reader in readers:
        variant = sender.renderer.render(sender.issue, list(selection))  # what a per-reader design does
        recipient = sender.recipient(reader)
        html, text = variant.fill(reader.name, recipient.unsubscribe_url, recipient.preferences_url)
        client.mail.send.post(
            request_body={
                "personalizations": [{"to": [{"email": reader.email}]}],
                "from": {"email": "digest@example.org"},
                "subject": sender.issue.subject,
                "asm": {"group_id": 1},
                "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
            }
        )
    naive = (time.perf_counter() - t) / len(readers)
    return {"requests": len(batches), "floor_s": floor, "naive_per_reader_s": naive, "naive_sample": len(readers)}


def start_fake(latency: float = 0.0) -> tuple[subprocess.Popen[str], int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fake_sendgrid.py"), str(port), str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--readers", default="100000", metavar="N[,N...]", help="readers (several: one run each, memory compared)"
    )
    parser.add_argument("--outbox-readers", type=int, default=10_000)
    parser.add_argument("--no-sendgrid", action="store_true", help="skip the SendGrid mode")
    parser.add_argument("--no-noop", action="store_true", help="skip the no-op backend")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="the fake SendGrid answers each request after this many ms (default 0: the local floor)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server (URL of any database on it) for the ledger: a scratch database per backend; "
        "default: SQLite in the folder",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        metavar="N",
        help="requests in the air at once (NEWSLETTER_SEND_CONNECTIONS; default 1)",
    )
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, what = Path(args.child[0]), args.child[1]
        print(json.dumps(first_sync(root) if what == "sync" else run_one(root, what)))
        return
    sizes = [int(n) for n in str(args.readers).replace("_", "").split(",")]
    modes = [("null", 0 if args.no_noop else n) for n in sizes] + [("outbox", args.outbox_readers)]
    if not args.no_sendgrid:
        modes += [("sendgrid", n) for n in sizes]
    results = []
    for backend, readers in modes:
        if readers:
            result, synced = measure(backend, readers, args)
            report(backend, result, synced, args)
            results.append(result)
    targets([r for r in results if r["backend"] == "sendgrid"])


def measure(backend: str, readers: int, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """One backend's send to ``readers`` readers, in processes of its own: (its figures, the first sync's)."""
    env = dict(os.environ, NEWSLETTER_SEND_CONNECTIONS=str(args.connections))
    fake = None
    if backend == "sendgrid":
        fake, port = start_fake(args.latency / 1000)
        env.update(
            SENDGRID_API_KEY="SG.fake-key-for-tests.0123456789",
            SENDGRID_API_HOST=f"http://127.0.0.1:{port}",
            SENDGRID_ASM_GROUP_ID="1",
            NEWSLETTER_FROM="Digest <digest@example.org>",
            NEWSLETTER_POSTAL_ADDRESS="1 Research Way",
            NEWSLETTER_SECRET="bench",
        )
    try:
        with tempfile.TemporaryDirectory() as tmp, scratch_database(args.database_url) as database:
            if database:
                env["NEWSLETTER_DATABASE_URL"] = database
                os.environ["NEWSLETTER_DATABASE_URL"] = database  # for make_database, in this process
            root = Path(tmp) / "nl"
            make_folder(root, readers)
            outputs = [
                subprocess.run(
                    [sys.executable, __file__, "--child", str(root), what],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout
                for what in ("sync", backend)
            ]
    finally:
        if fake is not None:
            fake.terminate()
            fake.wait()
    synced, result = (json.loads(out) for out in outputs)
    return result, synced


def report(backend: str, result: dict[str, Any], synced: dict[str, Any], args: argparse.Namespace) -> None:
    connections = f", {args.connections} connections" if args.connections > 1 else ""
    print(
        f"backend {backend}: {result['readers']:,} readers, {result['sent']:,} sent in "
        f"{result['variants']} variants, {result['skipped']:,} skipped, {result['failed']} failed "
        f"(ledger: {'PostgreSQL' if args.database_url else 'SQLite'}{connections})"
    )
    print(
        f"  first sync of the files into the database (once after they change; a process of its own): "
        f"{synced['seconds']:.2f} s, peak memory {synced['peak_rss_mb']:.0f} MB"
    )
    print(
        f"  total {result['total_s']:.2f} s ({result['sent'] / result['total_s']:,.0f} readers/s), "
        f"peak memory {result['peak_rss_mb']:.0f} MB"
    )
    for phase, seconds in result["phases"].items():
        print(f"  {phase:<24} {seconds:7.3f} s")
    if backend == "sendgrid":
        naive_total = result["naive_per_reader_s"] * result["sent"]
        print(f"  requests: {result['requests']} for {result['sent']:,} readers")
        print(
            f"  floor (POST the same payloads only): {result['floor_s']:.2f} s -> ours is "
            f"{result['send_loop_s'] / result['floor_s']:.2f}x the floor (send loop), "
            f"{result['total_s'] / result['floor_s']:.2f}x (whole run)"
        )
        print(
            f"  naive (render + POST per reader, {result['naive_sample']:,}-reader sample): "
            f"{result['naive_per_reader_s'] * 1000:.1f} ms/reader -> {naive_total:,.0f} s extrapolated, "
            f"{naive_total / result['total_s']:,.0f}x slower than ours"
        )


def targets(runs: list[dict[str, Any]]) -> None:
    """The SendGrid runs against the scaling targets: a million readers under 300 MB and 60 s, memory flat."""
    if not runs:
        return

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("targets (SendGrid backend, against the local fake):")
    for r in runs:
        under = r["total_s"] < 60 and r["peak_rss_mb"] < 300
        ratio = r["send_loop_s"] / r["floor_s"]
        print(
            f"  {r['readers']:,} readers: {r['total_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB "
            f"(under 60 s and 300 MB: {verdict(under)}); send loop {ratio:.2f}x the floor "
            f"(within 2x: {verdict(ratio <= 2)})"
        )
    if len(runs) > 1:
        low, high = min(runs, key=lambda r: r["readers"]), max(runs, key=lambda r: r["readers"])
        growth = high["peak_rss_mb"] / low["peak_rss_mb"] - 1
        print(
            f"  peak memory {low['peak_rss_mb']:.0f} MB at {low['readers']:,} readers, {high['peak_rss_mb']:.0f} MB "
            f"at {high['readers']:,}: {growth:+.0%} (within 20%: {verdict(abs(growth) <= 0.2)})"
        )


if __name__ == "__main__":
    main()
