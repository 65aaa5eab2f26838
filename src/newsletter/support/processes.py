"""Is the process that wrote a row still running?

Runs and the scheduler's lease record ``(host, pid, start time)`` and the
process's pid space (``pid_space``); where the pid space is ours, a dead pid,
or a pid reused by a newer process, means the owner is gone and its work may
be taken over. Anywhere else (another machine, or a container with its own
PID namespace, even under the same host name) our pids say nothing about
theirs, and only their heartbeat can tell.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    return stat.rsplit(")", 1)[1].split()[19]


@cache
def pid_space() -> str | None:
    """Where this process's pids mean what they mean to us: this boot of this kernel, this PID namespace.

    Two processes with the same pid space see each other's pids; the host
    name does not tell (containers often share the machine's, and two
    machines may be given one). None where Linux's /proc does not say.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return f"{boot}/{namespace.removeprefix('pid:[').removesuffix(']')}"


def alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``started``, if known) still runs in our pid space."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    # A busy machine reuses pids: a different start time is a different process.
    return started is None or start_time(pid) in (None, started)


def ours_to_check(host: str, space: str | None) -> bool:
    """Whether a row written on ``host`` in pid space ``space`` names a pid that ``alive`` can check here."""
    mine = pid_space()
    if space is not None:
        return space == mine
    # A row of a release that recorded no pid space: the host name is all there is.
    return host == socket.gethostname()
