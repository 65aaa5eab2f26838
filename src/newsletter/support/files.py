"""Writing files so that a reader never sees half of one, and folders that are swapped in whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter.support.processes import alive

TEMP_SUFFIX = ".tmp"


def write_temp(folder: Path, data: bytes) -> Path:
    """``data`` in a new hidden temporary file in ``folder`` (same file system as its final name).

    The name carries the writer's pid (``.<pid>-<random>.tmp``), so a later
    run can tell a file left by a killed process from one being written now
    (``remove_stale_temps``). A failed write leaves nothing behind.
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.getpid()}-", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def remove_stale_temps(folder: Path) -> int:
    """Remove temporary files in ``folder`` whose writer is no longer running; how many."""
    removed = 0
    for path in folder.glob(f".*{TEMP_SUFFIX}"):
        field = path.name[1:].split("-", 1)[0]
        writer = int(field) if field.isdigit() else None  # None: an older release's name, no pid
        if writer is not None and (writer == os.getpid() or alive(writer)):
            continue  # being written now: its writer links it into place and removes it
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed into place)."""
    tmp = write_temp(path.parent, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A new folder beside ``target`` to fill; on success it replaces ``target``, on failure it is removed.

    A failed build leaves the previous ``target`` intact, never half of each.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; what we build is for opening and sharing
    try:
        yield staging
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, target: Path) -> None:
    # Two renames: the window where `target` is missing is tiny, and a
    # crash in it leaves both folders on disk, never a mixed one.
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
