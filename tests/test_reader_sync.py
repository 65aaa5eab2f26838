"""Syncing the subscriber files: their problems are stored with the readers, and unchanged files are not parsed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from newsletter.audience.store import ReaderStore
from newsletter.audience.subscribers import read_subscribers
from newsletter.db import open_database
from newsletter.db.engine import connect
from newsletter.db.migrate import alembic_config
from newsletter.delivery.readers import reader_links, reader_store
from newsletter.settings import load_settings

from conftest import SUBSCRIBERS_HEADER, TAXONOMY, Newsletter

# The revision before reader_problems: a database its release synced has a signature and no problems.
BEFORE_PROBLEMS = "7e84fb11a480"
# Two files, so that the order across files counts; errors and a warning.
A_CSV = SUBSCRIBERS_HEADER + "ok@x.org,Ok,empathy,\nnot-an-address,X,empathy,\nw@x.org,W,empathy;zzqx,\n"
B_CSV = SUBSCRIBERS_HEADER + "OK@x.org,Again,all,\nshort@x.org,Short\n"
PROBLEMS = [
    "subscribers/a.csv:3: error: invalid address 'not-an-address': An email address must have an @-sign.",
    "subscribers/a.csv:4: warning: ignored unknown topic 'zzqx' (see `newsletter topics`)",
    "subscribers/b.csv:2: error: duplicate address OK@x.org: already on subscribers/a.csv:2; row skipped",
    "subscribers/b.csv:3: error: malformed CSV: 2 fields, header has 4; row skipped",
]


@pytest.fixture
def store(newsletter: Newsletter, database_url: str) -> Iterator[ReaderStore]:
    engine = open_database(database_url)
    readers = reader_store(load_settings(newsletter.root), engine)
    yield readers
    readers.close()
    engine.dispose()


def two_files(newsletter: Newsletter) -> Path:
    """The subscriber folder, holding a.csv and b.csv: their problems are PROBLEMS."""
    newsletter.write("subscribers/a.csv", A_CSV)
    return newsletter.write("subscribers/b.csv", B_CSV).parent


def one_bad(address: str) -> str:
    """A file of one reader and one bad address: the same size for addresses of the same length."""
    return SUBSCRIBERS_HEADER + f"ok@x.org,Ok,empathy,\n{address},B,empathy,\n"


def invalid(address: str) -> str:
    return f"invalid address '{address}': An email address must have an @-sign."


def rewrite_unseen(path: Path, content: str) -> None:
    """Give ``path`` other content of the same size, its times as they were: the signature cannot tell."""
    st = path.stat()
    assert len(content.encode()) == st.st_size
    path.write_text(content, encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_a_second_sync_of_unchanged_files_gives_the_same_problems_from_the_database(
    newsletter: Newsletter, store: ReaderStore
) -> None:
    folder = two_files(newsletter)
    first = store.sync(folder, TAXONOMY)
    assert [p.format(newsletter.root) for p in first] == PROBLEMS
    assert first == read_subscribers(folder, TAXONOMY).problems
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reader_problems")).scalar() == len(PROBLEMS)
    second = store.sync(folder, TAXONOMY)
    assert second == first  # equal Problems, their paths as the files' own
    assert store.refresh(folder, TAXONOMY) is False


def test_a_load_stores_the_problems_a_later_sync_gives(newsletter: Newsletter, store: ReaderStore) -> None:
    folder = two_files(newsletter)
    merged = store.load(folder, TAXONOMY)
    assert store.sync(folder, TAXONOMY) == merged.problems and len(merged.problems) == len(PROBLEMS)


def test_unchanged_files_are_not_parsed_and_a_changed_one_is(newsletter: Newsletter, store: ReaderStore) -> None:
    path = newsletter.write("subscribers/a.csv", one_bad("bad-one"))
    folder = path.parent
    assert [p.message for p in store.sync(folder, TAXONOMY)] == [invalid("bad-one")]
    rewrite_unseen(path, one_bad("bad-two"))
    # Still the stored problem: had the file been read, it would name bad-two.
    assert [p.message for p in store.sync(folder, TAXONOMY)] == [invalid("bad-one")]
    touch_later(path)
    assert [p.message for p in store.sync(folder, TAXONOMY)] == [invalid("bad-two")]
    path.write_text(SUBSCRIBERS_HEADER + "ok@x.org,Ok,empathy,\n", encoding="utf-8")
    touch_later(path)
    assert store.sync(folder, TAXONOMY) == []
    assert store.sync(folder, TAXONOMY) == []  # the old problems went with the sync that fixed them


def test_a_moved_folder_gets_its_stored_problems_under_its_new_place(
    newsletter: Newsletter, store: ReaderStore, tmp_path: Path
) -> None:
    path = newsletter.write("subscribers/a.csv", one_bad("bad-one"))
    store.sync(path.parent, TAXONOMY)
    moved = shutil.copytree(newsletter.root, tmp_path / "elsewhere" / "nl")  # copy2: mtimes kept
    rewrite_unseen(moved / "subscribers" / "a.csv", one_bad("bad-two"))
    problems = store.sync(moved / "subscribers", TAXONOMY)
    # bad-one: stored, not parsed; its path in the new folder, not the old
    assert [p.format() for p in problems] == [f"{moved}/subscribers/a.csv:3: error: {invalid('bad-one')}"]
    # A renamed folder is parsed again: the paths and messages stored name the old one.
    renamed = (moved / "subscribers").rename(moved / "readers")
    assert [p.format() for p in store.sync(renamed, TAXONOMY)] == [f"{renamed}/a.csv:3: error: {invalid('bad-two')}"]


def test_a_database_synced_before_problems_were_stored_is_synced_again(
    newsletter: Newsletter, database_url: str
) -> None:
    folder = two_files(newsletter)
    old = connect(database_url)
    signatures = ReaderStore(old, reader_links(load_settings(newsletter.root)).token).files
    with old.begin() as conn:
        command.upgrade(alembic_config(conn), BEFORE_PROBLEMS)
        # As if that release had synced these very files: the signature alone would call them unchanged.
        for name, value in (("files", signatures.signature(folder)[0]), ("token", signatures.fingerprint())):
            conn.execute(
                text("INSERT INTO reader_files (name, signature, synced_at) VALUES (:n, :v, CURRENT_TIMESTAMP)"),
                {"n": name, "v": value},
            )
    old.dispose()
    engine = open_database(database_url)
    store = reader_store(load_settings(newsletter.root), engine)
    try:
        assert [p.format(newsletter.root) for p in store.sync(folder, TAXONOMY)] == PROBLEMS
        rewrite_unseen(folder / "a.csv", A_CSV.replace("not-an-address", "not-an-addrezz"))
        assert [p.format(newsletter.root) for p in store.sync(folder, TAXONOMY)] == PROBLEMS  # stored this time
    finally:
        store.close()
        engine.dispose()
