"""The memory of a streamed list (``-o jsonl`` and ``-o csv``, query.cli.pages): bounded by a
page, not by the list.

Two things grew with the number of pages a store file read with ``--db`` streamed, not with
a page (measured on a 300 k-span session: +2.5 MB a page, 476 MB peak RSS after 62 pages):

- DuckDB's buffer cache keeps the table blocks each page read, up to ``store.memory_limit``
  (1 GiB by default), though a streamed list never reads a page's blocks again. A streamed
  read gets :data:`STREAM_MEMORY_LIMIT` instead when the configured budget is larger; what
  needs more spills to disk (``<store path>.tmp``) as with any budget.
- glibc's malloc keeps the memory a page's records were freed from, fragmented between what
  later pages allocate: :func:`release_freed_memory` hands it back after each page.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable
from functools import cache

import duckdb

# DuckDB's budget for a streamed read of a store file: its working memory stayed under 40 MB
# with 64 MB for a 300 k-span session's spans in trace order, pages of 5,000.
STREAM_MEMORY_LIMIT = 64 * 2**20

_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}


def budget_bytes(text: str) -> int | None:
    """DuckDB's ``current_setting('memory_limit')`` (``1.0 GiB``, ``61.0 MiB``) in bytes;
    None when it is not a size (no limit)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*(bytes|[KMGTP]iB)\s*", text)
    return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def limit_stream_memory(con: duckdb.DuckDBPyConnection) -> bool:
    """Lower the budget of ``con`` (a read-only connection this process alone uses) to
    :data:`STREAM_MEMORY_LIMIT`, unless it is already lower; whether it did. A read that needs
    more than that fails with ``duckdb.OutOfMemoryException`` (a session of 1 M spans needed
    more than 32 MiB): query.cli.source.LocalSource then runs it again in the configured
    budget."""
    (current,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    now = budget_bytes(str(current))
    if now is None or now > STREAM_MEMORY_LIMIT:
        con.execute(f"SET temp_directory = '{private_spill_folder()}'")
        con.execute(f"SET memory_limit = '{STREAM_MEMORY_LIMIT // 2**20}MiB'")
        return True
    return False


def private_spill_folder() -> str:
    """A spill folder of this process's own (DuckDB makes it when it first spills and removes
    it on close). In the budget above a read spills, and two processes spilling into the same
    folder (the store's ``<path>.tmp``) overwrite each other's files: two exports of one store
    file run side by side printed wrong records or crashed."""
    name = f"roomscope-stream-{os.getpid()}-{secrets.token_hex(4)}"
    return os.path.join(tempfile.gettempdir(), name).replace("'", "''")


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
