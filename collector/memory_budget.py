"""The collector's memory budget, ``store.memory_limit``, shared out once at start.

The budget holds DuckDB (its buffer cache, the write-ahead log between checkpoints, the working
memory of queries through this collector's API) and the write queue (decoded requests waiting
for a group commit, as Arrow tables). The queue may take ``limits.max_queue_bytes`` but never
more than a quarter of the budget; DuckDB gets the rest. So the collector's RSS stays within the
budget plus what the process itself holds (Python, gRPC, uvicorn, DuckDB's code: ~200 MiB,
docs/performance.md), whatever the load and the store's size.
"""

from __future__ import annotations

from .setting_values import size_bytes
from .settings import Settings

QUEUE_SHARE = 4  # the write queue takes at most 1/QUEUE_SHARE of the budget


def queue_bytes(settings: Settings) -> int:
    """The write queue's bound in bytes: ``limits.max_queue_bytes``, at most a quarter of the
    budget."""
    budget = size_bytes(settings.get("store.memory_limit"))
    return min(settings.get("limits.max_queue_bytes"), budget // QUEUE_SHARE)


def database_budget(settings: Settings) -> str:
    """DuckDB's share of the budget, in DuckDB's size syntax: the budget less the queue's."""
    budget = size_bytes(settings.get("store.memory_limit"))
    return f"{(budget - queue_bytes(settings)) // 1024}KiB"
