"""A store whose every commit takes longer: the overload, shutdown and bad-input tests' writer.

In-process tests pass ``slow_store(...)`` to ``start_collector(store=...)``; subprocess tests run
this file as ``roomscope serve`` (``python tests/slow_store.py DELAY serve ...``), which serves
with a :class:`SlowStore` in place of the settings' store.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import collector.server
from collector.settings import Settings
from collector.store import DuckDBStore, SessionPlan, create_store


class SlowStore(DuckDBStore):
    """A DuckDB store whose every commit takes ``delay`` seconds longer."""

    delay = 0.0

    def append(self, tables: Any, sessions: SessionPlan | None = None) -> None:
        time.sleep(self.delay)
        super().append(tables, sessions)


S = TypeVar("S", bound=DuckDBStore)


def store_of(cls: type[S], settings: Settings) -> S:
    """A ``cls`` (a DuckDBStore of a test's own) configured as the settings' store."""
    base = create_store(settings)
    assert isinstance(base, DuckDBStore)
    return cls(
        base.path,
        checkpoint_wal_bytes=base.checkpoint_wal_bytes,
        idle_checkpoint_bytes=base.idle_checkpoint_bytes,
        threads=base.threads,
        memory_limit=base.memory_limit,
        maintenance=base.maintenance,
    )


def slow_store(settings: Settings, delay: float) -> SlowStore:
    store = store_of(SlowStore, settings)
    store.delay = delay
    return store


if __name__ == "__main__":
    delay = float(sys.argv.pop(1))
    collector.server.create_store = lambda settings: slow_store(settings, delay)
    from query.cli import main

    main()
