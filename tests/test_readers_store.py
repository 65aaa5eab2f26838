"""Readers in the database: the files synced in, readers' own choices merged (newer wins; an unsubscribe sticks)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from newsletter.audience.choices import ONLINE, Reader
from newsletter.audience.store import ReaderStore
from newsletter.content.workspace import Workspace
from newsletter.db import open_database
from newsletter.db.schema import readers
from newsletter.delivery.readers import reader_store
from newsletter.settings import load_settings

from conftest import Newsletter

HEADER = "email,name,topics,status\n"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def row(**values: Any) -> dict[str, Any]:
    base = {
        c: None
        for c in (
            "file_name",
            "file_topics",
            "file_status",
            "file_at",
            "own_name",
            "own_topics",
            "own_status",
            "own_at",
        )
    }
    return {"key": "a@x.org", "email": "a@x.org", **base, **values}


def merged(database_url: str, values: dict[str, Any]) -> Reader:
    """The reader a row of the table stands for, as the database merges it for every query and send."""
    engine = open_database(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(readers.insert().values(token_hash="t" * 64, updated_at=T0, **values))
        found = ReaderStore(engine, lambda email: email).get(values["email"])
        assert found is not None
        return found
    finally:
        engine.dispose()


FILE = {"file_name": "File", "file_topics": "empathy", "file_status": "active", "file_at": T0}


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        ({}, ("File", {"empathy"}, "active")),  # nobody chose anything: the file
        (
            {"own_topics": "training", "own_at": T0 + timedelta(days=1)},
            ("File", {"training"}, "active"),
        ),  # newer choice wins
        (
            {"own_topics": "training", "own_at": T0 - timedelta(days=1)},
            ("File", {"empathy"}, "active"),
        ),  # newer file edit wins
        ({"own_topics": "training", "own_at": T0}, ("File", {"training"}, "active")),  # a tie: the reader's
        (
            {"own_status": "unsubscribed", "own_at": T0 - timedelta(days=1)},
            ("File", {"empathy"}, "unsubscribed"),
        ),  # sticks
        ({"own_status": "bounced", "own_at": T0 - timedelta(days=1)}, ("File", {"empathy"}, "active")),  # does not
        ({"own_name": "Mine", "own_topics": "all", "own_at": T0 + timedelta(seconds=1)}, ("Mine", None, "active")),
        ({"own_name": "Mine", "own_at": T0 + timedelta(microseconds=1)}, ("Mine", {"empathy"}, "active")),
    ],
)
def test_merge_rule(database_url: str, own: dict[str, Any], expected: tuple[object, ...]) -> None:
    reader = merged(database_url, row(**FILE, **own))
    assert (reader.name, reader.topics, reader.status) == expected


def test_a_reader_only_online_is_their_own_choice(database_url: str) -> None:
    reader = merged(database_url, row(own_name="Web", own_topics="cbt;anxiety", own_status="active", own_at=T0))
    assert (reader.name, reader.topics, reader.status, reader.in_files) == ("Web", {"cbt", "anxiety"}, "active", False)


@pytest.fixture
def store(newsletter: Newsletter) -> tuple[ReaderStore, Newsletter]:
    newsletter.write("subscribers/a.csv", HEADER + "a@x.org,A,empathy,\nb@x.org,B,all,\n")
    settings = load_settings(newsletter.root)
    return reader_store(settings, open_database(settings.ledger_url)), newsletter


def load(store: ReaderStore, nl: Newsletter) -> dict[str, tuple[object, ...]]:
    ws = Workspace(load_settings(nl.root))
    merged = store.load(ws.settings.subscribers_dir, ws.taxonomy)
    return {s.email: (s.name, s.topics, s.status, s.path == ONLINE) for s in merged.subscribers}


def statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_unchanged_files_cost_one_query_and_a_change_is_synced(store: tuple[ReaderStore, Newsletter]) -> None:
    readers_, nl = store
    assert load(readers_, nl) == {
        "a@x.org": ("A", {"empathy"}, "active", False),
        "b@x.org": ("B", None, "active", False),
    }
    writes, reads = statements(readers_.engine), statements(readers_.reads)
    load(readers_, nl)
    assert writes == []  # not even a BEGIN IMMEDIATE: no write lock taken
    assert [s.split()[0] for s in reads] == ["SELECT", "SELECT"]  # the signature, the readers' own choices
    nl.write("subscribers/a.csv", HEADER + "a@x.org,A,empathy;training,\n")
    os.utime(nl.root / "subscribers" / "a.csv", (time.time() + 5, time.time() + 5))
    assert load(readers_, nl) == {"a@x.org": ("A", {"empathy", "training"}, "active", False)}
    with readers_.engine.connect() as conn:
        assert conn.execute(select(readers.c.key)).scalars().all() == ["a@x.org"]  # b left the files and chose nothing


def test_a_reader_off_the_files_stays_if_they_chose_and_an_unsubscribe_survives_an_edit(
    store: tuple[ReaderStore, Newsletter],
) -> None:
    readers_, nl = store
    load(readers_, nl)
    readers_.choose("b@x.org", topics=frozenset({"cbt"}))
    readers_.choose("a@x.org", status="unsubscribed")
    readers_.choose("Web@X.org", name="Web", topics=None, status="active")
    later = time.time() + 60  # the author edits the file after those choices
    nl.write("subscribers/a.csv", HEADER + "a@x.org,A,all,active\n")
    os.utime(nl.root / "subscribers" / "a.csv", (later, later))
    assert load(readers_, nl) == {
        "a@x.org": ("A", None, "unsubscribed", False),  # the edit's topics, never its "active"
        "b@x.org": ("B", {"cbt"}, "active", True),  # off the files, kept: they chose
        "Web@X.org": ("Web", None, "active", True),
    }
    found = readers_.find(readers_._token("web@x.org"))
    assert found is not None and found.email == "Web@X.org"
    assert readers_.find("not-a-token") is None
