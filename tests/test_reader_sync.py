"""Syncing the subscriber files: their problems are stored with the readers, and unchanged files are not parsed."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from newsletter.audience import file_layer
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


# -- a sync streamed: a chunk of readers at a time, each row marked with the sync's number ----------

ROWS = "key, email, token_hash, file_name, file_topics, file_status, file_path, file_line, file_at, own_name, own_at"


def stored(store: ReaderStore) -> dict[str, tuple[object, ...]]:
    with store.engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(text(f"SELECT {ROWS} FROM readers"))}


def places(store: ReaderStore) -> dict[str, tuple[str, int]]:
    with store.engine.connect() as conn:
        return {
            key: (path, line) for key, path, line in conn.execute(text("SELECT key, file_path, file_line FROM readers"))
        }


@pytest.fixture(params=[1, 2, 3, 1000], ids=lambda n: f"chunk{n}")
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Readers written at a time: duplicates fall in one chunk or across chunks."""
    monkeypatch.setattr(file_layer, "CHUNK", request.param)
    monkeypatch.setattr(file_layer, "IN_LIST", 2)
    return int(request.param)


def test_duplicates_within_and_across_files_are_reported_as_a_whole_read_reports_them(
    newsletter: Newsletter, store: ReaderStore, chunk: int
) -> None:
    newsletter.write(
        "subscribers/a.csv",
        SUBSCRIBERS_HEADER + "a@x.org,A,all,\nb@x.org,B,all,\nA@x.org,A again,all,\nbad,X,all,\nc@x.org,C,all,\n",
    )
    folder = newsletter.write(
        "subscribers/b.csv", SUBSCRIBERS_HEADER + "B@X.ORG,B again,all,\nd@x.org,D,all,\nc@x.org,C,zzqx;all,\n"
    ).parent
    whole = read_subscribers(folder, TAXONOMY)
    assert [p.format(newsletter.root) for p in store.sync(folder, TAXONOMY)] == [
        p.format(newsletter.root) for p in whole.problems
    ]
    assert [p.message for p in whole.problems if "duplicate" in p.message] == [
        "duplicate address A@x.org: already on line 2; row skipped",
        "duplicate address B@x.org: already on subscribers/a.csv:3; row skipped",
        "duplicate address c@x.org: already on subscribers/a.csv:6; row skipped",
    ]
    # The first row of each address is the one kept, as the whole read keeps it.
    assert places(store) == {s.key: (f"subscribers/{s.path.name}", s.line) for s in whole.subscribers}
    assert store.sync(folder, TAXONOMY) == whole.problems  # stored


def test_a_reader_who_moved_keeps_file_at_and_a_changed_one_takes_the_files_mtime(
    newsletter: Newsletter, store: ReaderStore, chunk: int
) -> None:
    a = newsletter.write("subscribers/a.csv", SUBSCRIBERS_HEADER + "m@x.org,M,all,\nc@x.org,C,all,\ns@x.org,S,all,\n")
    b = newsletter.write("subscribers/b.csv", SUBSCRIBERS_HEADER + "o@x.org,O,all,\n")
    assert store.sync(a.parent, TAXONOMY) == []
    before = stored(store)
    a.write_text(SUBSCRIBERS_HEADER + "s@x.org,S,all,\nc@x.org,C changed,all,\n", encoding="utf-8")
    b.write_text(SUBSCRIBERS_HEADER + "o@x.org,O,all,\nm@x.org,M,all,\n", encoding="utf-8")
    touch_later(a)
    touch_later(b)
    assert store.sync(a.parent, TAXONOMY) == []
    after = stored(store)
    assert places(store) == {
        "s@x.org": ("subscribers/a.csv", 2),
        "c@x.org": ("subscribers/a.csv", 3),
        "o@x.org": ("subscribers/b.csv", 2),
        "m@x.org": ("subscribers/b.csv", 3),
    }
    file_at = ROWS.split(", ").index("file_at") - 1
    for moved in ("m@x.org", "s@x.org"):  # to another file, to another line: values unchanged
        assert after[moved][file_at] == before[moved][file_at]
    assert after["o@x.org"] == before["o@x.org"]  # untouched
    assert after["c@x.org"][file_at] != before["c@x.org"][file_at]  # its file's new mtime
    assert after["c@x.org"][2] == "C changed"


def test_readers_gone_from_the_files_keep_their_own_choice_or_are_deleted(
    newsletter: Newsletter, store: ReaderStore, chunk: int
) -> None:
    path = newsletter.write(
        "subscribers/a.csv",
        SUBSCRIBERS_HEADER + "stay@x.org,Stay,all,\nchose@x.org,Chose,empathy,\nleft@x.org,L,all,\n",
    )
    store.sync(path.parent, TAXONOMY)
    store.choose("chose@x.org", topics=frozenset({"ptsd"}))
    store.choose("web@x.org", name="Web", topics=None, status="active")  # online only: no file layer
    path.write_text(SUBSCRIBERS_HEADER + "stay@x.org,Stay,all,\n", encoding="utf-8")
    touch_later(path)
    store.sync(path.parent, TAXONOMY)
    rows = stored(store)
    assert sorted(rows) == ["chose@x.org", "stay@x.org", "web@x.org"]  # left@ chose nothing: deleted
    chose = store.get("chose@x.org")
    assert chose is not None and (chose.name, chose.topics, chose.in_files) == ("Chose", {"ptsd"}, False)
    assert rows["chose@x.org"][2:8] == (None,) * 6  # the file layer cleared, the name kept as their own
    web = store.get("web@x.org")
    assert web is not None and (web.name, web.in_files) == ("Web", False)


def test_a_sync_that_fails_midway_leaves_the_last_one_whole(
    newsletter: Newsletter, store: ReaderStore, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = newsletter.write("subscribers/a.csv", A_CSV)
    folder = newsletter.write("subscribers/b.csv", B_CSV).parent
    store.sync(folder, TAXONOMY)
    before = stored(store)
    path.write_text(
        SUBSCRIBERS_HEADER + "new@x.org,New,all,\nok@x.org,Renamed,all,\nboom@x.org,Boom,all,\nbad,X,all,\n",
        encoding="utf-8",
    )
    touch_later(path)
    token = store.files._token

    def failing(email: str) -> str:
        if email == "boom@x.org":
            raise RuntimeError("the disk filled up")
        return token(email)

    monkeypatch.setattr(store.files, "_token", failing)
    with pytest.raises(RuntimeError, match="the disk filled up"):
        store.sync(folder, TAXONOMY)
    assert stored(store) == before
    assert [p.format(newsletter.root) for p in store.files.problems(folder)] == PROBLEMS  # the last sync's
    monkeypatch.setattr(store.files, "_token", token)
    assert [p.message for p in store.sync(folder, TAXONOMY)] == [
        "invalid address 'bad': An email address must have an @-sign.",
        "duplicate address OK@x.org: already on subscribers/a.csv:3; row skipped",
        "malformed CSV: 2 fields, header has 4; row skipped",
    ]
    assert sorted(stored(store)) == ["boom@x.org", "new@x.org", "ok@x.org"]


def test_a_later_sync_finds_a_duplicate_of_an_unchanged_row_in_any_chunk(
    newsletter: Newsletter, store: ReaderStore, chunk: int
) -> None:
    path = newsletter.write("subscribers/a.csv", SUBSCRIBERS_HEADER + "a@x.org,A,all,\nb@x.org,B,all,\n")
    store.sync(path.parent, TAXONOMY)
    path.write_text(SUBSCRIBERS_HEADER + "a@x.org,A,all,\nA@X.org,Again,all,\nc@x.org,C,all,\n", encoding="utf-8")
    touch_later(path)
    assert [p.message for p in store.sync(path.parent, TAXONOMY)] == [
        "duplicate address A@x.org: already on line 2; row skipped"
    ]
    assert places(store) == {"a@x.org": ("subscribers/a.csv", 2), "c@x.org": ("subscribers/a.csv", 4)}
    assert stored(store)["a@x.org"][2] == "A"  # the first row's, not the duplicate's


def test_a_new_secret_rehashes_every_reader_a_page_at_a_time(
    newsletter: Newsletter, store: ReaderStore, chunk: int
) -> None:
    newsletter.write("subscribers/a.csv", SUBSCRIBERS_HEADER + "".join(f"r{i}@x.org,R,all,\n" for i in range(7)))
    store.sync(newsletter.root / "subscribers", TAXONOMY)
    store.choose("web@x.org", name="Web", topics=None, status="active")
    store.files._token = lambda email: "new-" + email.lower()
    assert store.refresh(newsletter.root / "subscribers", TAXONOMY) is True  # the files unchanged: only rehashed
    hashes = {key: row[1] for key, row in stored(store).items()}
    assert hashes == {key: hashlib.sha256(f"new-{key}".encode()).hexdigest() for key in hashes}
    assert len(hashes) == 8


def test_a_sync_on_postgresql_leaves_the_readers_vacuumed_and_analysed(
    newsletter: Newsletter, postgres_url: str
) -> None:
    # A send that follows finds statistics to plan by, and autovacuum no pass
    # over the rows just written to make in the middle of it.
    engine = open_database(postgres_url)
    store = reader_store(load_settings(newsletter.root), engine)
    store.sync(two_files(newsletter), TAXONOMY)
    with engine.connect() as conn:
        vacuumed, analysed = conn.execute(
            text("SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = 'readers'")
        ).one()
    store.close()
    engine.dispose()
    assert vacuumed is not None and analysed is not None
