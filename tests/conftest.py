"""What the tests share: temporary newsletter folders, the CLI runner, readers, the outbox, the browser.

Every helper lives here once, so that a test file holds only its tests:

- ``newsletter`` and ``samples``: a newsletter folder under ``tmp_path`` (never the repository);
- the environment: every test starts without NEWSLETTER_* and SENDGRID_* variables (autouse);
- readers: ``SUBSCRIBERS_HEADER``, ``Newsletter.readers`` and ``july_readers`` (who of them gets 2021-07);
- the outbox: ``Newsletter.outbox`` lists ``outbox/ISSUE/*.eml``, ``read_eml`` parses one;
- the browser: one session of headless Chromium (``browser``, ``window``), which fails, never skips;
- hermeticity: a run that leaves anything new or changed in the repository fails (see the end).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import getpass
import os
import shutil
import subprocess
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.content.taxonomy import load_taxonomy
from newsletter.delivery.ledger import Ledger
from newsletter.settings import load_settings
from newsletter.web.preview import Preview, PreviewServer, running

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[1]
TAXONOMY = load_taxonomy(REPO / "issues" / "topics.yaml")

# Read before any test runs: the autouse fixture below clears every NEWSLETTER_* variable.
UPDATE_SCREENSHOTS = os.environ.get("NEWSLETTER_UPDATE_SCREENSHOTS") == "1"
SETTINGS_PREFIXES = ("NEWSLETTER_", "SENDGRID_")

GOOD_SUMMARY = """\
---
title: "Therapist Empathy and Outcome"
citation: "Smith, A., & Jones, B. (2021). Empathy and outcome. Psychotherapy, 58(1), 1–10."
doi: "10.1037/pst0000001"
topics:
  - Empathy
  - therapist factors
---
Smith and colleagues studied *empathy* in 120 therapists.

## Practice Implications

Be empathic.
"""

# --- readers ------------------------------------------------------------------------------------------

SUBSCRIBERS_HEADER = "email,name,topics,status\n"
# Topic choices that readers written by ``Newsletter.readers`` take in turn. "training" matches no
# summary of the sample issue 2021-07, so those readers are skipped for it (see ``july_readers``).
READER_TOPICS = ("all", "anxiety", "Therapist Factors", "depression;outcomes", "training", "feedback;trauma")


def july_readers(n: int) -> set[str]:
    """The addresses of ``Newsletter.readers(n)`` that the sample issue 2021-07 goes to."""
    return {f"reader{i}@example.org" for i in range(n) if READER_TOPICS[i % len(READER_TOPICS)] != "training"}


def read_eml(path: Path) -> EmailMessage:
    """A message the outbox wrote, parsed with the modern email API.

    Parsed as text: an internationalised address is raw UTF-8 in its header
    (RFC 6532), which the bytes parser would read as ASCII.
    """
    return email.message_from_string(path.read_bytes().decode("utf-8"), policy=email.policy.default)  # type: ignore[return-value]


# --- the newsletter folder ----------------------------------------------------------------------------


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


class Newsletter:
    """A newsletter folder under tmp_path, with helpers to write issues and readers and to look at what was sent."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relpath: str, text: str | bytes) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def issue(
        self, issue_id: str = "2030-01", *, meta: str | None = None, summaries: dict[str, str] | None = None
    ) -> Path:
        self.write(
            f"issues/{issue_id}/issue.md",
            meta
            if meta is not None
            else ('---\nsubject: "Empathy and burnout"\nintro: "Two studies on therapists."\nstatus: ready\n---\n'),
        )
        if summaries is None:
            summaries = {
                "01-empathy.md": GOOD_SUMMARY,
                "02-burnout.md": GOOD_SUMMARY.replace("Therapist Empathy and Outcome", "Burnout"),
            }
        for name, text in summaries.items():
            self.write(f"issues/{issue_id}/{name}", text)
        return self.root / "issues" / issue_id

    def subscribers(self, rows: str, name: str = "sample") -> Path:
        """``subscribers/NAME.csv``: the header, then ``rows`` (``email,name,topics,status`` lines)."""
        return self.write(f"subscribers/{name}.csv", SUBSCRIBERS_HEADER + rows)

    def readers(self, n: int, extra: str = "") -> Path:
        """``subscribers/sample.csv`` with ``n`` readers ``reader{i}@example.org`` (topics from READER_TOPICS)."""
        rows = [f"reader{i}@example.org,Reader {i},{READER_TOPICS[i % len(READER_TOPICS)]},\n" for i in range(n)]
        return self.subscribers("".join(rows) + extra)

    def outbox(self, issue: str = "2021-07") -> list[Path]:
        """The messages the outbox backend wrote for ``issue`` (``reports`` for the author's reports)."""
        folder = self.root / "outbox" / issue
        return sorted(folder.glob("*.eml")) if folder.is_dir() else []

    def ledger(self) -> Ledger:
        """The folder's default ledger, ``state/newsletter.db``."""
        return Ledger(f"sqlite:///{self.root / 'state' / 'newsletter.db'}")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a ``newsletter`` subprocess on this folder (this one's, which tests keep clean)."""
        return {**os.environ, "NEWSLETTER_ROOT": str(self.root), **extra}

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        result = runner.invoke(app, ["--root", str(self.root), *args], env=env, catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's settings: every NEWSLETTER_* and SENDGRID_* variable is removed.

    Subprocesses started with ``os.environ`` inherit the cleaned environment too.
    """
    for key in list(os.environ):
        if key.startswith(SETTINGS_PREFIXES):
            monkeypatch.delenv(key)


@pytest.fixture
def newsletter(tmp_path: Path) -> Newsletter:
    """An empty newsletter folder with the shipped taxonomy and templates."""
    root = tmp_path / "nl"
    (root / "issues").mkdir(parents=True)
    shutil.copy(REPO / "issues" / "topics.yaml", root / "issues" / "topics.yaml")
    if (REPO / "templates").is_dir():
        shutil.copytree(REPO / "templates", root / "templates")
    (root / "subscribers").mkdir()
    return Newsletter(root)


@pytest.fixture
def samples(tmp_path: Path) -> Newsletter:
    """A copy of the shipped newsletter folder (sample issues and subscribers)."""
    root = tmp_path / "samples"
    root.mkdir()
    for name in ("issues", "templates", "subscribers"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name)
    return Newsletter(root)


@pytest.fixture
def preview_server(samples: Newsletter) -> Iterator[PreviewServer]:
    """``newsletter preview 2021-07`` of the ``samples`` copy, served in this process on a free port."""
    preview = Preview(load_settings(samples.root), "2021-07")
    with running(preview, port=0) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join(timeout=5)


# -- the databases: every ledger test runs on SQLite and on PostgreSQL -----------------------

# `bash .ci/run` starts Debian's PostgreSQL server and sets this; without it,
# the tests try that server's usual socket as the current user.
POSTGRES_ENV = "NEWSLETTER_TEST_POSTGRES_URL"
# Read at import: the autouse fixture clears every NEWSLETTER_* variable before each test.
POSTGRES_URL = os.environ.get(POSTGRES_ENV, "")


def postgres_admin_url() -> str:
    """A URL of the test server's maintenance database, as a superuser (it creates databases)."""
    return POSTGRES_URL or f"postgresql+psycopg://{getpass.getuser()}@/postgres?host=/var/run/postgresql"


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped after it (whoever is still connected)."""
    admin = postgres_admin_url()
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    name = f"newsletter_test_{uuid.uuid4().hex[:12]}"
    missing = None
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except (SQLAlchemyError, ImportError) as err:
        engine.dispose()
        missing = f"{type(err).__name__}: {getattr(err, 'orig', None) or err}"
    if missing:  # failed outside the except: the message alone, not the driver's traceback
        pytest.fail(
            f"this test needs a PostgreSQL server, and {admin} did not answer ({missing}). "
            f"Run the tests with `bash .ci/run`, which installs and starts one and sets {POSTGRES_ENV}.",
            pytrace=False,
        )
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            # FORCE: a process the test killed may not have been noticed gone yet.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The ledger's database, once SQLite (a file under tmp_path) and once a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for what only PostgreSQL can do (senders on several machines)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def use_database(request: pytest.FixtureRequest, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``database_url`` as NEWSLETTER_DATABASE_URL, for commands and the processes a test starts."""
    for folder in ("newsletter", "samples"):  # they clear NEWSLETTER_* first: set it after them
        if folder in request.fixturenames:
            request.getfixturevalue(folder)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    return database_url


# --- the browser --------------------------------------------------------------------------------------
#
# One policy for every test marked ``browser``: real headless Chromium, Debian's package at
# /usr/bin/chromium (never `playwright install`, which downloads a browser of its own). A missing
# browser is a broken install, so those tests fail and say how to get it; they never skip.

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the whole session."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests drive it, and never skip. Run "
            "`bash .ci/run` (it installs Debian's chromium with apt, then runs the checks and the tests).",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def window(browser: Browser, width: int = 800, height: int = 800, **options: Any) -> Iterator[Page]:
    """A page ``width`` px wide (a headless window is never narrower than 500 px; a context's viewport is)."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme="light",
        device_scale_factor=1,
        **options,
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that drives the browser is a ``browser`` test (``-m 'not browser'`` leaves it out)."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


# --- hermeticity ------------------------------------------------------------------------------------
#
# Tests write only under tmp_path. A run that leaves the repository changed fails: a new or changed
# file, tracked or not, ignored or not (build/, outbox/, state/, site/ in the repository are exactly
# what a test run must never write), or a tracked file rewritten even with the same bytes (the
# README's screenshots once were on every run). Caches of the tools are allowed. With
# NEWSLETTER_UPDATE_SCREENSHOTS=1 the screenshots are expected to change.

CACHES = (
    *(".venv/", ".pytest_cache/", ".hypothesis/", "__pycache__/", ".egg-info/"),
    *(".ruff_cache/", ".mypy_cache/", ".import_linter_cache/"),
)
SCREENSHOTS = ("docs/screenshot-375.png", "docs/screenshot-800.png")
STATE_FOLDERS = ("build", "outbox", "state", "site")  # what the commands write beside a newsletter folder
_BEFORE = pytest.StashKey[dict[str, object] | None]()


def repository_state() -> dict[str, object] | None:
    """`git status` of every path but the caches, and the mtime of each tracked file and of each file in
    the state folders (None outside a git checkout, such as an sdist: nothing to compare then)."""
    try:
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--ignored", "--untracked-files=normal"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    state: dict[str, object] = {}
    for line in status.splitlines():
        path = line[3:]
        if not any(cache in f"/{path}" for cache in CACHES):
            state[path] = line[:2]
    files = [
        REPO / path for path in tracked.stdout.split("\0") if path and not (UPDATE_SCREENSHOTS and path in SCREENSHOTS)
    ]
    files += [path for name in STATE_FOLDERS for path in (REPO / name).rglob("*")]
    for path in files:
        with contextlib.suppress(FileNotFoundError):  # deleted: `git status` says so
            state[f"{path.relative_to(REPO)} (mtime)"] = path.stat().st_mtime_ns
    return state


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = repository_state()


def pytest_sessionfinish(session: pytest.Session) -> None:
    before, after = session.config.stash.get(_BEFORE, None), repository_state()
    if before is None or after is None or before == after:
        return
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_sep("=", "FAILED: the tests wrote into the repository", red=True, bold=True)
        reporter.write_line(
            f"Tests write only under tmp_path, yet after this run these differ in {REPO} "
            f"(unless something else changed them meanwhile): {', '.join(changed)}",
            red=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
