"""Is the process that wrote a row still running?

Runs and the scheduler's lease record ``(host, pid, start time)``; on the
same host a dead pid, or a pid reused by a newer process, means the owner is
gone and its work may be taken over.
"""

from __future__ import annotations

import os
from pathlib import Path


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``started``, if known) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    # A busy machine reuses pids: a different start time is a different process.
    return started is None or start_time(pid) in (None, started)
