"""Make ``ledger-release-e802a9d.db``: a ledger database written by release e802a9d's own code.

That release (the last before schema migrations) created its tables with
``create_all`` and kept no ``alembic_version``; ``tests/test_db.py`` checks
that today's code upgrades such a file in place with every row kept. The
file is committed, so the test needs no git history; this script is how it
was made (run from the repository root, with the project's virtualenv):

    .venv/bin/python tests/data/previous_release_db.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RELEASE = "e802a9d"
TARGET = Path(__file__).with_name(f"ledger-release-{RELEASE}.db")

PREVIOUS = r"""
import sys
from datetime import UTC, datetime

import newsletter.ledger
from newsletter.ledger import Ledger
from newsletter.schedule import SendAtAttempts

assert newsletter.ledger.__file__.startswith(sys.argv[2]), newsletter.ledger.__file__
ledger = Ledger(sys.argv[1])
run = ledger.start_run("2021-07")
assert ledger.claim("2021-07", ["a@x.org", "b@x.org"], run_id=run, batch_id="b1", variant="all") == ["a@x.org", "b@x.org"]
ledger.record_batch("2021-07", "b1", "sent", message_id="m1")
assert ledger.claim("2021-07", ["c@x.org"], run_id=run, batch_id="b2", variant="01") == ["c@x.org"]
ledger.record_batch("2021-07", "b2", "failed", reason="refused")
ledger.record_skipped("2021-07", [("d@x.org", "unsubscribed")])
ledger.finish_run(run)
ledger.replace_suppressions({"e@x.org": "bounce", "f@x.org": "spam report"})
SendAtAttempts(ledger.engine).move("2021-07", datetime(2021, 7, 1, 9, tzinfo=UTC), None, "done")
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", RELEASE, "src"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        TARGET.unlink(missing_ok=True)
        subprocess.run(
            [sys.executable, "-c", PREVIOUS, f"sqlite:///{TARGET}", f"{tmp}/src"],
            env={"PYTHONPATH": f"{tmp}/src", "PATH": "/usr/bin:/bin"},
            check=True,
        )
    for suffix in ("-wal", "-shm"):
        Path(f"{TARGET}{suffix}").unlink(missing_ok=True)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
