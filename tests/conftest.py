"""Shared fixtures: a temporary newsletter folder, the CLI runner, the databases."""

from __future__ import annotations

import getpass
import os
import shutil
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.settings import load_settings
from newsletter.web.preview import Preview, PreviewServer, running

REPO = Path(__file__).resolve().parents[1]

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


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


class Newsletter:
    """A newsletter folder under tmp_path, with helpers to write issues."""

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

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        result = runner.invoke(app, ["--root", str(self.root), *args], env=env, catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def newsletter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Newsletter:
    """An empty newsletter folder with the shipped taxonomy and templates."""
    for key in list(__import__("os").environ):
        if key.startswith(("NEWSLETTER_", "SENDGRID_")):
            monkeypatch.delenv(key)
    root = tmp_path / "nl"
    (root / "issues").mkdir(parents=True)
    shutil.copy(REPO / "issues" / "topics.yaml", root / "issues" / "topics.yaml")
    if (REPO / "templates").is_dir():
        shutil.copytree(REPO / "templates", root / "templates")
    (root / "subscribers").mkdir()
    return Newsletter(root)


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Newsletter:
    """A copy of the shipped newsletter folder (sample issues and subscribers)."""
    for key in list(__import__("os").environ):
        if key.startswith(("NEWSLETTER_", "SENDGRID_")):
            monkeypatch.delenv(key)
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


def postgres_admin_url() -> str:
    """A URL of the test server's maintenance database, as a superuser (it creates databases)."""
    return (
        os.environ.get(POSTGRES_ENV) or f"postgresql+psycopg://{getpass.getuser()}@/postgres?host=/var/run/postgresql"
    )


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
