"""The outbox backend: one ``.eml`` file per reader, the embedded default.

Files are named by the reader's opaque token, never their address, and
written atomically: a temporary file is linked into place, which fails if
the file exists, so the outbox can never hold two copies for one reader and
a file that exists is a message wholly delivered. That also lets the outbox
settle an in-doubt batch after a crash: it simply looks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from newsletter.delivery.backends.base import Backend, Envelope, Outcome, Recipient
from newsletter.delivery.backends.message import build_message
from newsletter.errors import BatchFailed
from newsletter.support.files import remove_stale_temps, write_temp

Payload = list[tuple[str, str, bytes]]  # (address, file name, message bytes)


class OutboxBackend(Backend):
    name = "outbox"
    batch_size = 200

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._swept: set[Path] = set()

    def describe(self) -> str:
        return f"outbox ({self.folder})"

    def issue_folder(self, envelope_issue: str, test: bool = False) -> Path:
        return self.folder / envelope_issue / ("test" if test else "")

    def build(self, envelope: Envelope, recipients: Sequence[Recipient]) -> Payload:
        now = datetime.now(UTC)
        payload = []
        for recipient in recipients:
            msg = build_message(envelope, recipient, now)
            name = (
                f"{envelope.variant.key.replace('+', '-')}-{envelope.batch_id}-{recipient.token}.eml"
                if envelope.test
                else f"{recipient.token}.eml"
            )
            payload.append((recipient.key, name, msg))
        return payload

    def post(self, envelope: Envelope, payload: Payload) -> Outcome:
        folder = self.issue_folder(envelope.issue_id, envelope.test)
        temps: list[tuple[str, str, Path]] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if folder not in self._swept:  # what a killed run left half-written
                remove_stale_temps(folder)
                self._swept.add(folder)
            for key, name, data in payload:
                temps.append((key, name, write_temp(folder, data)))
        except OSError as err:
            for _, _, tmp in temps:  # a full disk must not keep what was written before it filled
                tmp.unlink(missing_ok=True)
            raise BatchFailed(f"cannot write to the outbox {folder}: {err.strerror}") from None
        # One flush for the batch instead of an fsync per file: the files
        # are on disk before any of them becomes visible under its name.
        os.sync()
        outcome = Outcome()
        for key, name, tmp in temps:
            try:
                os.link(tmp, folder / name)  # unlike rename, refuses to replace a file
            except FileExistsError:
                # The reader's message for this issue is already there (a file
                # exists only once written whole): delivered, even if the
                # ledger that said so was lost.
                pass
            except OSError as err:
                outcome.failed[key] = f"cannot write to the outbox: {err.strerror}"
            finally:
                tmp.unlink(missing_ok=True)
        return outcome

    def delivered(self, issue_id: str, recipients: Sequence[Recipient]) -> set[str] | None:
        folder = self.issue_folder(issue_id)
        return {r.key for r in recipients if (folder / f"{r.token}.eml").exists()}


__all__ = ["OutboxBackend"]
