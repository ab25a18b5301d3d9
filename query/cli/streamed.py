"""The memory of a streamed list (``-o jsonl`` and ``-o csv``, query.cli.pages): what a page
leaves behind is handed back.

Memory grew with the number of pages a store file read with ``--db`` streamed: glibc's malloc
kept the memory a page's records were freed from, fragmented between what later pages
allocate (tracemalloc saw no Python object survive a page). :func:`release_freed_memory` hands
it back after each page. (A session's spans through ``--db`` are read in DuckDB's budget
``query.stream_memory_limit``, which bounds its table cache: query.cli.source.LocalSource.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (not musl)
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> None:
    """Give the memory malloc holds free back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). ~1 ms after a page of 5,000 spans."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
