"""Pausing Python's cyclic garbage collector around bulk work.

Reading 100,000 readers and sending them an issue make millions of small
objects that either live on (the reader list) or die by reference counting
(each batch's payload). The cyclic collector finds nothing to free in either,
yet its passes rescan every live object: at 100,000 readers they cost about a
third of the load and of the send loop (bench/send.py). Collection resumes
when the work is done, so a long-running scheduler does not grow.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
