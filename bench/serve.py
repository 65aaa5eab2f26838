"""Benchmark: `newsletter serve` under 200 concurrent sign-ups and 200 concurrent preference saves.

    .venv/bin/python bench/serve.py                 # 200 of each, 5,000 readers in the files
    .venv/bin/python bench/serve.py --concurrency 50 --readers 100000

The server is the real command (`newsletter serve`, uvicorn, SQLite in WAL
mode) in its own process on a free 127.0.0.1 port, with the outbox backend;
the load comes from httpx's async client in this process, every request at
once. Each sign-up arrives from its own client address through the trusted
proxy path (X-Forwarded-For from 127.0.0.1), as behind a reverse proxy, so
the per-client limit is in force and not hit. Then it checks what must hold:

- no error: every answer is a 200;
- every sign-up's confirmation email is in the outbox (none lost);
- every save is in the database afterwards (no lost update).

Printed: latency of the POSTs (p50, p95, max) and the throughput of each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
# Each simulated reader has a client of its own (one shared pool of 200 connections made the
# client, not the server, the bottleneck); one TLS context for all, as creating one costs ~10 ms.
TLS = ssl.create_default_context()


def make_folder(root: Path, readers: int) -> list[str]:
    from newsletter.content.taxonomy import load_taxonomy

    for name in ("issues", "templates"):
        shutil.copytree(REPO / name, root / name)
    (root / "subscribers").mkdir()
    slugs = [t.slug for t in load_taxonomy(root / "issues" / "topics.yaml")]
    rng = random.Random(13)
    emails = [f"reader{i}@example{i % 97}.org" for i in range(readers)]
    with open(root / "subscribers" / "readers.csv", "w", encoding="utf-8") as out:
        out.write("email,name,topics,status\n")
        for i, address in enumerate(emails):
            out.write(f"{address},Reader {i},{';'.join(rng.sample(slugs, rng.randint(1, 3)))},active\n")
    return slugs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms   max {ordered[-1] * 1000:6.1f} ms"
    )


async def signups(url: str, count: int, slugs: list[str]) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    rng = random.Random(1)

    async def one(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, verify=TLS) as client:
            await signup(client, i)

    async def signup(client: httpx.AsyncClient, i: int) -> None:
        headers = {"X-Forwarded-For": f"127.{i // 65536 % 256}.{i // 256 % 256}.{i % 256 + 1}"}
        page = await client.get("/subscribe/", headers=headers)
        found = TOKEN.search(page.text)
        if page.status_code != 200 or not found:
            errors.append(f"GET {page.status_code}")
            return
        data = {"form_token": found.group(1), "email": f"new{i}@example.org", "name": f"New {i}"}
        data["topic"] = rng.sample(slugs, 2)  # type: ignore[assignment]
        started = time.perf_counter()
        answer = await client.post("/subscribe/", data=data, headers=headers)
        latencies.append(time.perf_counter() - started)
        if answer.status_code != 200 or "Check your inbox" not in answer.text:
            errors.append(f"POST {answer.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return latencies, errors, time.perf_counter() - started


async def saves(
    url: str, tokens: list[tuple[str, str]], slugs: list[str]
) -> tuple[list[float], list[str], dict[str, set[str]], float]:
    latencies: list[float] = []
    errors: list[str] = []
    wanted: dict[str, set[str]] = {}
    rng = random.Random(2)

    async def one(i: int, address: str, token: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, verify=TLS) as client:
            await save(client, i, address, token)

    async def save(client: httpx.AsyncClient, i: int, address: str, token: str) -> None:
        headers = {"X-Forwarded-For": f"127.200.{i // 256 % 256}.{i % 256 + 1}"}
        page = await client.get("/preferences/", params={"t": token}, headers=headers)
        found = TOKEN.search(page.text)
        if page.status_code != 200 or not found:
            errors.append(f"GET {page.status_code}")
            return
        topics = rng.sample(slugs, 3)
        wanted[address] = set(topics)
        started = time.perf_counter()
        answer = await client.post(
            "/preferences/",
            params={"t": token},
            data={"form_token": found.group(1), "name": f"Saved {i}", "topic": topics},
            headers=headers,
        )
        latencies.append(time.perf_counter() - started)
        if answer.status_code != 200 or "Saved" not in answer.text:
            errors.append(f"POST {answer.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i, a, t) for i, (a, t) in enumerate(tokens)))
    return latencies, errors, wanted, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=200, help="sign-ups, then saves, all at once (default 200)")
    parser.add_argument("--readers", type=int, default=5000, help="readers in the subscriber files (default 5000)")
    args = parser.parse_args()
    from newsletter.delivery.ledger import Ledger
    from newsletter.delivery.readers import reader_links, reader_store
    from newsletter.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nl"
        slugs = make_folder(root, args.readers)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
        env.update(NEWSLETTER_BASE_URL=url, NEWSLETTER_SECRET="bench-secret")
        server = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--root", str(root), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            n = args.concurrency
            print(f"newsletter serve on {url}: {args.readers:,} readers in the files, {n} concurrent clients")

            latencies, errors, took = asyncio.run(signups(url, n, slugs))
            outbox = root / "outbox" / "confirm"
            deadline = time.monotonic() + 120
            while len(list(outbox.glob("*.eml"))) < n and time.monotonic() < deadline:
                time.sleep(0.1)
            mailed = len(list(outbox.glob("*.eml"))) if outbox.is_dir() else 0
            print(f"sign-ups     {n} in {took:5.2f} s ({n / took:5.0f}/s)   {percentiles(latencies)}")
            print(f"             errors: {len(errors)}; confirmation emails in the outbox: {mailed} of {n}")

            settings = load_settings(root, base_url=url, secret="bench-secret")
            links = reader_links(settings)
            chosen = random.Random(3).sample(range(args.readers), n)
            tokens = [(f"reader{i}@example{i % 97}.org", links.token(f"reader{i}@example{i % 97}.org")) for i in chosen]
            latencies, errors, wanted, took = asyncio.run(saves(url, tokens, slugs))
            with Ledger(settings.ledger_url) as ledger:
                store = reader_store(settings, ledger.engine)
                lost = [a for a, topics in wanted.items() if (r := store.get(a)) is None or r.topics != topics]
                store.close()
            print(f"saves        {n} in {took:5.2f} s ({n / took:5.0f}/s)   {percentiles(latencies)}")
            print(f"             errors: {len(errors)}; lost updates: {len(lost)} of {len(wanted)}")
            if errors or lost or mailed < n:
                raise SystemExit(1)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
