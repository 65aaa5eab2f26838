"""A send's readers, streamed from the database a chunk at a time: every reader once, merged, with their ledger row."""

from __future__ import annotations

from datetime import UTC, datetime

from newsletter.audience.choices import topics_text
from newsletter.content.workspace import Workspace
from newsletter.delivery.ledger import FAILED, SENT, Ledger
from newsletter.delivery.readers import addressees, issue_readers, reader_store
from newsletter.settings import load_settings

from conftest import Newsletter


def test_the_stream_gives_every_reader_once_in_address_order_with_their_ledger_row_and_suppression(
    newsletter: Newsletter, database_url: str
) -> None:
    newsletter.subscribers(
        "e@x.org,E,all,\n"
        "B@X.org,B,Empathy,\n"  # compared in lower case: its key is b@x.org
        "c@x.org,C,all,unsubscribed\n"
        "a@x.org,A,Training,\n"
        "d@x.org,D,all,\n"
    )
    ws = Workspace(load_settings(newsletter.root))
    with Ledger(database_url) as ledger:
        store = reader_store(ws.settings, ledger.engine)
        try:
            assert store.sync(ws.settings.subscribers_dir, ws.taxonomy) == []
            store.choose("f@x.org", name="F", topics=frozenset({"trauma"}), status="active")  # signed up online
            store.choose("a@x.org", topics=None, at=datetime.now(UTC))  # their own choice, newer than the file
            ledger.replace_suppressions({"d@x.org": "bounced at the provider"})
            ledger.enqueue("2030-01", ["c@x.org", "d@x.org", "e@x.org"])
            run = ledger.start_run("2030-01")
            # Rows first and last in a chunk (c and d): each chunk's ledger rows are found by their range.
            assert ledger.claim("2030-01", ["c@x.org", "d@x.org"], run_id=run, batch_id="b0", variant="all")
            ledger.record_failed("2030-01", "b0", {"d@x.org": "refused"})
            ledger.record_batch("2030-01", "b0", SENT)
            assert ledger.claim("2030-01", ["e@x.org"], run_id=run, batch_id="b1", variant="all") == ["e@x.org"]
            ledger.record_batch("2030-01", "b1", SENT)
            chunks = list(issue_readers(store, "2030-01", chunk=2))
            # four queries, none left open between them; ranges one after the other, the last to the end
            assert [len(c.rows) for c in chunks] == [2, 2, 2, 0]
            assert [(c.after, c.upto) for c in chunks] == [
                ("", "b@x.org"),
                ("b@x.org", "d@x.org"),
                ("d@x.org", "f@x.org"),
                ("f@x.org", None),
            ]
            rows = [tuple(r) for c in chunks for r in c.rows]
            assert rows == [
                ("a@x.org", "a@x.org", "A", topics_text(None), "active", None, None, None),
                ("b@x.org", "B@x.org", "B", "empathy", "active", None, None, None),
                ("c@x.org", "c@x.org", "C", "all", "unsubscribed", None, SENT, None),
                ("d@x.org", "d@x.org", "D", "all", "active", "bounced at the provider", FAILED, "refused"),
                ("e@x.org", "e@x.org", "E", "all", "active", None, SENT, None),
                ("f@x.org", "f@x.org", "F", "trauma", "active", None, None, None),
            ]
            assert next(iter(issue_readers(store, "2030-02", chunk=6))).rows[4][6] is None  # another issue: no row
            found = addressees(store, ["b@x.org", "f@x.org", "nobody@x.org"])
            assert {k: (a.email, a.name) for k, a in found.items()} == {
                "b@x.org": ("B@x.org", "B"),  # the domain in lower case, as validated
                "f@x.org": ("f@x.org", "F"),
            }
        finally:
            store.close()
