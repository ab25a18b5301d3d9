"""The store: the one package that knows roomscope's tables and speaks their SQL.

Public faces:

- :class:`Store` (``interface``): what the collector asks of a backend; :func:`create_store`
  makes the configured one: the embedded DuckDB file (:class:`DuckDBStore`, the default) or a
  DuckLake several collectors write (:class:`DuckLakeStore`, ``store.backend = "ducklake"``).
- :mod:`collector.store.reads`: the read surface of the query library (read-only opening of a
  store, the table and view names, SQL fragments for joins and attribute lookups).
- :func:`prune_store`: ``roomscope prune`` on a store no collector holds.
"""

from __future__ import annotations

import time

from .. import durations, memory_budget
from ..errors import StoreError
from ..settings import Settings, disk_bytes
from .duckdb_store import DuckDBStore, Maintenance
from .ducklake_store import DuckLakeStore
from .interface import Job, Recount, Run, Store, Task
from .lake_connect import LakeConfig, parse_store
from .lake_maintenance import MaintenancePlan
from .lake_migrate import copy_to_lake
from .maintenance.retention import Pruned
from .outbox import OutboxBatch
from .outbox import decode as decode_batch
from .schema import ARROW_SCHEMAS, SCHEMA_VERSION
from .session_rows import FLUSH_NS, SessionPlan, SessionState

__all__ = [
    "ARROW_SCHEMAS",
    "FLUSH_NS",
    "SCHEMA_VERSION",
    "DuckDBStore",
    "DuckLakeStore",
    "Job",
    "LakeConfig",
    "Maintenance",
    "OutboxBatch",
    "Pruned",
    "Recount",
    "Run",
    "SessionPlan",
    "SessionState",
    "Store",
    "Task",
    "create_store",
    "decode_batch",
    "lake_config",
    "migrate_to_lake",
    "parse_store",
    "prune_store",
]


def lake_config(settings: Settings) -> LakeConfig:
    """Where the lake of ``store.backend = "ducklake"`` is (``store.catalog`` and the rest)."""
    s = settings
    return LakeConfig(
        s.get("store.catalog"),
        s.get("store.data_path"),
        s.get("store.s3_endpoint"),
        s.get("store.s3_region"),
    )


def create_store(settings: Settings) -> DuckDBStore | DuckLakeStore:
    """The store the settings describe (``store.*``, ``retention.*``, ``compaction.*``), not
    opened yet."""
    s = settings
    if s.get("store.backend") == "ducklake":
        config = lake_config(s)
        config.check()
        return DuckLakeStore(
            config,
            threads=s.get("store.threads"),
            memory_limit=memory_budget.database_budget(s),
            maintenance=MaintenancePlan(
                max_age=durations.seconds(s.get("retention.max_age")),
                interval=s.get("compaction.interval"),
                memory_limit=s.get("store.memory_limit"),
            ),
        )
    return DuckDBStore(
        s.get("store.path"),
        checkpoint_wal_bytes=memory_budget.checkpoint_bytes(s),
        idle_checkpoint_bytes=s.get("store.idle_checkpoint_bytes"),
        threads=s.get("store.threads"),
        memory_limit=memory_budget.database_budget(s),
        maintenance=Maintenance(
            max_age=durations.seconds(s.get("retention.max_age")),
            max_bytes=disk_bytes(s.get("retention.max_bytes")),
            retention_interval=s.get("retention.interval"),
            rows=s.get("compaction.rows"),
            after=durations.seconds(s.get("compaction.after")),
            wait=durations.seconds(s.get("compaction.wait")),
            merge=s.get("compaction.merge"),
            levels=s.get("compaction.levels"),
            reclaim=s.get("compaction.reclaim"),
            compaction_interval=s.get("compaction.interval"),
        ),
    )


def prune_store(settings: Settings, older_than: float, now_ns: int | None = None) -> Pruned:
    """``roomscope prune``: open the store no collector holds and delete what is older than
    ``older_than`` seconds."""
    store = create_store(settings)
    if isinstance(store, DuckLakeStore):
        raise StoreError(
            "a lake is pruned by its collectors' maintenance job (setting retention.max_age)"
        )
    try:
        store.open()
    except StoreError as exc:
        if "in use" in str(exc):
            raise StoreError(
                f"store {store.location} is in use (a running collector holds it): its"
                " retention job prunes it (setting retention.max_age); or stop it and run"
                " roomscope prune"
            ) from None
        raise
    try:
        cutoff = (time.time_ns() if now_ns is None else now_ns) - int(older_than * 1e9)
        return store.prune(cutoff)
    finally:
        store.close()


def migrate_to_lake(settings: Settings, path: str) -> dict[str, int]:
    """``roomscope migrate``: copy the store file ``path`` into the lake the settings describe
    (``store.backend = "ducklake"``); rows copied per table."""
    store = create_store(settings)
    if not isinstance(store, DuckLakeStore):
        raise StoreError(
            "roomscope migrate copies into a lake: give --to ducklake:postgresql://..."
        )
    return copy_to_lake(path, store)
