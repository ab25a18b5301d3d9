"""The embedded backend: one DuckDB file, written by the collector's writer thread.

:class:`DuckDBStore` implements :class:`~collector.store.interface.Store`. Only the writer
thread appends (group commits of decoded batches and session rows); readers get cursors of
their own; the maintenance jobs (:mod:`collector.store.maintenance`) run on the writer thread
between commits and are the only other code that touches its connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from ..absent_modules import skip_absent
from ..errors import StoreError, StoreUnavailable
from .batches import attribute_keys, insert_batch, known_ids, one_table, unseen_rows
from .faults import is_store_trouble, needs_reopen
from .interface import Busy, Job, Recount, Run
from .maintenance.compaction import Compaction
from .maintenance.retention import Pruned, Retention, prune_connection
from .memory import apply_memory_limit
from .migrations import migrate
from .outbox import Outbox, OutboxBatch, take
from .schema import (
    ATTRIBUTE_KEYS_INSERT,
    ATTRIBUTE_KEYS_LOAD,
    SHARED_TABLES,
    storage_table,
)
from .session_rows import SessionPlan, SessionState, read_sessions, recount_active
from .span_archive import SPAN_ROWS
from .spool import Spool
from .statements import transaction

log = logging.getLogger("roomscope.store")

# New files use DuckDB's v1.5 storage format: its compression stores our spans in ~25% fewer
# bytes (tests/benchmarks/query.py). Older files keep the format they were made with.
STORAGE_VERSION = "v1.5.0"
# Seconds to wait before each retry of a checkpoint that met another write transaction; None:
# give up (the caller's next round tries again).
CHECKPOINT_WAITS = (0.02, 0.05, 0.1, 0.2, 0.5, None)

Transaction = Callable[[duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True)
class Maintenance:
    """What the maintenance jobs do (settings ``retention.*`` and ``compaction.*``, resolved)."""

    max_age: float  # seconds; 0 keeps everything
    max_bytes: int  # the size cap of the data; 0: none
    retention_interval: float
    rows: int  # compaction's chunk size; 0 turns compaction off
    after: float  # seconds before a range of start times is compacted
    wait: float  # seconds settled spans wait for a range's worth before a smaller range moves
    merge: int
    levels: int
    reclaim: float
    compaction_interval: float


class DuckDBStore:
    """One DuckDB file. The writer thread is the only caller of the writing methods."""

    def __init__(
        self,
        path: str | Path,
        *,
        checkpoint_wal_bytes: int,
        idle_checkpoint_bytes: int,
        threads: int,
        memory_limit: str,
        maintenance: Maintenance,
    ):
        self.path = str(path)
        self.checkpoint_wal_bytes = checkpoint_wal_bytes
        self.idle_checkpoint_bytes = idle_checkpoint_bytes
        self.threads = threads
        self.memory_limit = memory_limit
        self.maintenance = maintenance
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._generation = 0
        self._reopen_pending = False  # a reopen after a failure did not succeed yet
        self._attribute_keys: set[tuple[str, str]] = set()  # rows of span_attribute_keys
        self._known: dict[str, set[int]] = {t: set() for t in SHARED_TABLES}  # ids held
        self._threads = 1  # DuckDB threads for appends (store.threads, resolved at open)
        # The forwarding queue (off until outbox_open); its payloads in <path>.forward/.
        spool = None if self.path == ":memory:" else Path(self.path + ".forward")
        self._outbox = Outbox(Spool(spool))

    @property
    def location(self) -> str:
        return self.path

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def shared(self) -> bool:
        return False  # the file has one writer

    def session_turn(self) -> contextlib.AbstractContextManager[list[SessionState]]:
        """Nothing to wait for or adopt: this collector is the file's only writer."""
        return contextlib.nullcontext([])

    # -- opening and closing --------------------------------------------------------------
    def open(self) -> None:
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(
                    f"cannot open store {self.path}: directory {parent} does not exist"
                )
        skip_absent()
        try:
            self._con = duckdb.connect(
                self.path,
                config={"storage_compatibility_version": STORAGE_VERSION},
            )
            # A long statement (a migration, a compaction) would draw a progress bar on the
            # collector's stderr.
            self._con.execute("SET enable_progress_bar = false")
            apply_memory_limit(self._con, self.path, self.memory_limit)
            # The writer checkpoints at checkpoint_wal_bytes itself (with every core, see
            # checkpoint()); DuckDB's own trigger, inside a commit, is only the safety net.
            limit = 2 * int(self.checkpoint_wal_bytes)
            self._con.execute(f"SET checkpoint_threshold = '{limit}B'")
            self._threads = self.threads or max(1, (os.cpu_count() or 2) - 1)
            self._con.execute(f"SET threads = {int(self._threads)}")
            # An unknown function in user SQL must not make DuckDB fetch an extension from the
            # network (autoinstall) or load one from disk (autoload); roomscope needs none
            # beyond the built-in json and parquet.
            self._con.execute("SET autoinstall_known_extensions = false")
            self._con.execute("SET autoload_known_extensions = false")
        except duckdb.Error as exc:
            if self._con is not None:
                with contextlib.suppress(duckdb.Error):
                    self._con.close()
                self._con = None
            if "lock" in str(exc).lower():
                raise StoreError(
                    f"store {self.path} is in use (another process, such as a running"
                    f" collector, holds it): {str(exc).splitlines()[0]}"
                ) from None
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        migrate(self._con, self.path)
        self._attribute_keys = set(self._con.execute(ATTRIBUTE_KEYS_LOAD).fetchall())
        self._load_known()
        self._outbox.load(self._con)

    def _load_known(self) -> None:
        self._known = known_ids(self.con)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The writer's connection: the store package's own (maintenance jobs, migrations)."""
        if self._con is None:
            raise StoreUnavailable("store is closed")
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                with contextlib.suppress(duckdb.Error):
                    self._con.execute("CHECKPOINT")
                self._con.close()
                self._con = None
            self._outbox.spool.close()

    def reopen(self) -> None:
        """Close and open again (after an I/O failure invalidated the database).

        Readers' cursors are closed with the old connection (they get a clean
        ``ConnectionException``). When opening fails (the disk is still unusable), the store
        stays closed and the next write tries again; until then writes and :meth:`cursor`
        raise :class:`StoreUnavailable`.
        """
        self.close()
        self._reopen_pending = True
        self._generation += 1
        try:
            self.open()
        except (StoreError, duckdb.Error, OSError) as exc:
            with contextlib.suppress(Exception):
                self.close()
            raise StoreUnavailable(f"cannot reopen store {self.path}: {exc}") from None
        self._reopen_pending = False

    # -- writing (the writer thread) ------------------------------------------------------
    def append(
        self, tables: Mapping[str, Sequence[pa.Table]], sessions: SessionPlan | None = None
    ) -> None:
        """Append batches to their tables and write ``sessions`` in the same transaction.

        ``tables`` maps signals (``spans``, ``logs``, ``metric_points``) and the rows they refer
        to (SHARED_TABLES, ``trace_index``) to batches; shared rows the store already holds are
        skipped."""
        also = sessions.apply if sessions is not None else None
        self._guarded(lambda: self._write(tables, also))

    def execute(self, fn: Transaction) -> None:
        """Run statements in one transaction on the writer's connection."""
        self._guarded(lambda: self._write({}, fn))

    def probe(self) -> None:
        """A tiny write: succeeds only when a commit can reach the disk again."""
        self.execute(
            lambda con: con.execute(
                "UPDATE roomscope_meta SET value = value WHERE key = 'schema_version'"
            )
        )

    def _guarded(self, write: Callable[[], None]) -> None:
        """Run a write; when the file cannot be written, raise StoreUnavailable (retryable)
        and, after a fatal I/O error, reopen (now, or at the next write if that fails)."""
        try:
            if self._con is None and self._reopen_pending:
                self.reopen()  # an earlier failure left the store closed: try again
            write()
        except Exception as exc:
            if not is_store_trouble(exc):
                raise
            if needs_reopen(exc):
                with contextlib.suppress(Exception):
                    self.reopen()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"store cannot be written: {exc}") from exc

    def _write(self, tables: Mapping[str, Sequence[pa.Table]], also: Transaction | None) -> None:
        con = self.con
        new_keys: set[tuple[str, str]] = set()
        new_ids: dict[str, set[int]] = {}
        whole = {name: one_table(batches) for name, batches in tables.items()}
        with transaction(con):
            for name, batch in whole.items():
                if batch is not None and name in SHARED_TABLES:
                    batch, new_ids[name] = unseen_rows(self._known[name], name, batch)
                    new_keys |= attribute_keys(name, batch)
                if batch is None:
                    continue
                insert_batch(con, storage_table(name), batch)
            new_keys -= self._attribute_keys
            if new_keys:
                con.executemany(ATTRIBUTE_KEYS_INSERT, [list(k) for k in new_keys])
            queued = self._outbox.stage(con, whole)
            if also is not None:
                also(con)
        self._outbox.adopt(queued)
        self._attribute_keys |= new_keys
        for name, ids in new_ids.items():
            self._known[name] |= ids

    def prune_shared(self) -> int:
        """Delete the resources and keysets no span or log record refers to any more (after
        retention)."""
        users = {
            "resources": ("resource_id", [SPAN_ROWS, storage_table("logs")]),
            "attribute_keysets": ("attribute_keyset", [SPAN_ROWS]),
        }
        deleted = 0
        with transaction(self.con) as con:
            for table, id_column in SHARED_TABLES.items():
                column, sources = users[table]
                # The ids in use first (an aggregate of a few groups), then the delete of the
                # others: a NOT IN over the records themselves sizes its join's table by the
                # records' count (40 M spans: one 512 MiB allocation, past DuckDB's budget).
                in_use = set()
                for source in sources:
                    sql = f"SELECT DISTINCT {column} FROM {source} WHERE {column} IS NOT NULL"
                    in_use.update(r[0] for r in con.execute(sql).fetchall())
                ids = [r[0] for r in con.execute(f"SELECT {id_column} FROM {table}").fetchall()]
                unused = [i for i in ids if i not in in_use]
                if unused:
                    con.execute(
                        f"DELETE FROM {table} WHERE {id_column} IN (SELECT unnest(?))", [unused]
                    )
                    deleted += len(unused)
        self._load_known()
        return deleted

    # -- the forwarding queue (collector.store.outbox) --------------------------------------
    def outbox_open(self, endpoints: Mapping[str, str], max_bytes: int) -> None:
        self.execute(lambda con: self._outbox.open(con, endpoints, max_bytes))

    def outbox_take(self, endpoint: str, limit: int) -> list[OutboxBatch]:
        with contextlib.closing(self.cursor()) as cur:
            return take(cur, self._outbox.spool.directory, endpoint, limit)

    def outbox_done(
        self,
        endpoint: str,
        seq: int,
        sent: tuple[int, int],
        rejected: tuple[int, int],
        error: str | None,
    ) -> None:
        gone: list[int] = []
        self.execute(
            lambda con: gone.append(self._outbox.done(con, endpoint, seq, sent, rejected, error))
        )
        self._outbox.forget(gone[0])

    def outbox_failed(self, endpoint: str, error: str) -> None:
        self.execute(lambda con: self._outbox.failed(con, endpoint, error))

    # -- checkpoints ----------------------------------------------------------------------
    def wal_bytes(self) -> int:
        """Size of the write-ahead log not yet checkpointed into the file."""
        try:
            return os.path.getsize(self.path + ".wal")
        except OSError:
            return 0

    def maybe_checkpoint(self, idle: bool) -> None:
        """Checkpoint once the log passes a limit: right after a commit under load
        (``store.checkpoint_wal_bytes``; DuckDB would do it inside a commit, on one core) or
        while nothing waits (``store.idle_checkpoint_bytes``, so the log rarely gets that far)."""
        limit = self.idle_checkpoint_bytes if idle else self.checkpoint_wal_bytes
        if limit and self.wal_bytes() >= limit:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file, on every core: commits wait for a checkpoint
        anyway, and DuckDB compresses row groups in parallel (600 k spans: 1.1 s on 2 threads,
        1.8 s on 1)."""
        wal, started = self.wal_bytes(), time.monotonic()
        with self.all_cores():
            for wait in CHECKPOINT_WAITS:
                try:
                    self.con.execute("CHECKPOINT")
                    break
                except duckdb.TransactionException as exc:
                    # A reader's cursor creating its TEMP views (query/library/sandbox.py) is a
                    # write transaction for a moment; FORCE CHECKPOINT would abort its query.
                    if "other write transactions" not in str(exc) or wait is None:
                        raise
                    time.sleep(wait)
        log.info("checkpoint: %d MB of log in %.1f s", wal // 10**6, time.monotonic() - started)

    @contextlib.contextmanager
    def all_cores(self) -> Iterator[None]:
        """DuckDB runs on every core meanwhile (work the writer waits for anyway: checkpoints,
        compaction), then on ``store.threads`` again (appends)."""
        self.con.execute(f"SET threads = {os.cpu_count() or 1}")
        try:
            yield
        finally:
            self.con.execute(f"SET threads = {int(self._threads)}")

    # -- sessions, maintenance, reading ---------------------------------------------------
    def load_sessions(self) -> list[SessionState]:
        with contextlib.closing(self.cursor()) as cur:
            return read_sessions(cur)

    def recount_active(self) -> list[Recount]:
        with contextlib.closing(self.cursor()) as cur:
            return recount_active(cur)

    def jobs(
        self, run: Run, forget: Callable[[set[str]], None] | None, busy: Busy | None = None
    ) -> list[Job]:
        m = self.maintenance
        return [
            Retention(run, m.max_age, m.retention_interval, forget, max_bytes=m.max_bytes),
            Compaction(
                run,
                self.cursor,
                rows=m.rows,
                after=m.after,
                wait=m.wait,
                interval=m.compaction_interval,
                max_age=m.max_age,
                merge=m.merge,
                levels=m.levels,
                reclaim=m.reclaim,
                busy=busy,
            ),
        ]

    def prune(self, cutoff_ns: int) -> Pruned:
        """Delete everything older than ``cutoff_ns`` now (``roomscope prune`` on a store no
        collector holds; a running collector's retention job does it in steps)."""
        pruned = prune_connection(self.con, cutoff_ns)
        if pruned.total:
            pruned.add("shared", self.prune_shared())
        return pruned

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database, for readers (thread-safe to create)."""
        with self._lock:
            return self.con.cursor()
