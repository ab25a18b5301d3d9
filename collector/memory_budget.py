"""The collector's memory budget, ``store.memory_limit``, shared out once at start.

The budget holds the whole process: first a share set aside for what the process itself holds
(Python, gRPC, uvicorn, DuckDB's code: ~150-200 MiB at start; the request bodies being read
and decoded), then the write queue (decoded requests waiting for a group commit, as Arrow
tables), and DuckDB gets the rest (its buffer cache, the data written since the last
checkpoint, the working memory of queries through this collector's API). The process share is
three eighths of the budget, at most ``PROCESS_BYTES``; the queue may take
``limits.max_queue_bytes`` but never more than a quarter of the budget. So the collector's RSS
stays within the budget whatever the load and the store's size (docs/performance.md).
"""

from __future__ import annotations

from .setting_values import size_bytes
from .settings import Settings

QUEUE_SHARE = 4  # the write queue takes at most 1/QUEUE_SHARE of the budget
CHECKPOINT_SHARE = 4  # the load checkpoint comes at 1/CHECKPOINT_SHARE of DuckDB's share
PROCESS_SHARE = 3 / 8  # the process's share of the budget,
PROCESS_BYTES = 384 * 2**20  # at most this


def queue_bytes(settings: Settings) -> int:
    """The write queue's bound in bytes: ``limits.max_queue_bytes``, at most a quarter of the
    budget."""
    budget = size_bytes(settings.get("store.memory_limit"))
    return min(settings.get("limits.max_queue_bytes"), budget // QUEUE_SHARE)


def process_bytes(settings: Settings) -> int:
    """The share set aside for the process itself: three eighths of the budget, at most
    ``PROCESS_BYTES``."""
    return min(PROCESS_BYTES, int(size_bytes(settings.get("store.memory_limit")) * PROCESS_SHARE))


def database_bytes(settings: Settings) -> int:
    """DuckDB's share of the budget: the budget less the process's share and the queue's."""
    budget = size_bytes(settings.get("store.memory_limit"))
    return budget - process_bytes(settings) - queue_bytes(settings)


def database_budget(settings: Settings) -> str:
    """DuckDB's share of the budget, in DuckDB's size syntax."""
    return f"{database_bytes(settings) // 1024}KiB"


def checkpoint_bytes(settings: Settings) -> int:
    """The log size that forces a checkpoint under load: ``store.checkpoint_wal_bytes``, at most
    a quarter of DuckDB's share (what was written since the last checkpoint stays in DuckDB's
    memory until the checkpoint writes it out)."""
    return min(
        settings.get("store.checkpoint_wal_bytes"), database_bytes(settings) // CHECKPOINT_SHARE
    )
