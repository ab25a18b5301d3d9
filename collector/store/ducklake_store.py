"""The scale-out backend: a DuckLake (PostgreSQL catalog, Parquet files on a shared directory
or S3) that any number of collectors write at once (SPEC 10).

:class:`DuckLakeStore` implements :class:`~collector.store.interface.Store` over the lake
that :mod:`collector.store.lake_connect` attaches. Each append is one DuckLake transaction,
committed optimistically: DuckLake itself retries a commit whose snapshot another replica
moved on when the changes do not overlap; a conflict it cannot resolve is retried here, the
whole transaction again. Each commit carries a tag (DuckLake's commit message): when a
commit's outcome is unknown (the catalog went away during COMMIT), the store looks the tag up
once the catalog answers again, so a batch that did land is not written twice.

The catalog or the data path being unreachable raises StoreUnavailable, which the writer turns
into retryable answers (503 / UNAVAILABLE) and a probe until the lake answers; DuckDB's
connection to PostgreSQL recovers by itself when the server is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence

import duckdb
import pyarrow as pa

from ..errors import SettingsError, StoreError, StoreUnavailable
from .batches import attribute_keys, insert_batch, known_ids, one_table, unseen_rows
from .faults import is_conflict, is_unreachable
from .interface import Busy, Job, Recount, Run
from .lake_connect import LAKE, LakeConfig, connect, make_views
from .lake_maintenance import LakeMaintenance, MaintenancePlan
from .lake_sessions import SessionLock, apply_plan, changed_sessions, current_snapshot
from .lake_setup import create_tables, give_statistics, tune_writes
from .outbox import OutboxBatch
from .schema import (
    ATTRIBUTE_KEYS,
    ATTRIBUTE_KEYS_LOAD,
    SHARED_TABLES,
    storage_table,
)
from .session_rows import SessionPlan, SessionState, read_sessions, recount_active

log = logging.getLogger("roomscope.store")

Transaction = Callable[[duckdb.DuckDBPyConnection], None]

CONFLICT_RETRIES = 20  # whole-transaction retries of a commit DuckLake could not merge
UNKNOWN_OUTCOME_WAIT = 5.0  # seconds to wait for the catalog to say whether a commit landed


class DuckLakeStore:
    """A lake written by this collector and any number of others."""

    def __init__(
        self,
        config: LakeConfig,
        *,
        threads: int,
        memory_limit: str,
        maintenance: MaintenancePlan,
    ):
        self.config = config
        self.threads = threads
        self.memory_limit = memory_limit
        self.maintenance = maintenance
        self.replica = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._db: duckdb.DuckDBPyConnection | None = None  # the database with the views
        self._con: duckdb.DuckDBPyConnection | None = None  # the writer's cursor (USE lake)
        self._lock = threading.Lock()
        self._generation = 0
        self._attribute_keys: set[tuple[str, str]] = set()
        self._known: dict[str, set[int]] = {t: set() for t in SHARED_TABLES}
        self._unknown_tag: str | None = None  # a commit whose outcome is not known yet
        self._session_lock = SessionLock(config.catalog)
        self._seen = 0  # the snapshot up to which other replicas' session rows were adopted
        self.stats = dict.fromkeys(
            ("commits", "conflicts", "reconciled", "turns", "adopted", "feed_reads"), 0
        )
        self.turn_seconds = 0.0  # time spent holding the session lock
        # Where a turn's time goes: reading the others' session rows, writing the records,
        # the session rows, the journal, the COMMIT (seconds, summed; logged at close).
        self.phases = dict.fromkeys(("read", "records", "sessions", "journal", "commit"), 0.0)

    @property
    def location(self) -> str:
        return self.config.location

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def shared(self) -> bool:
        return True

    @contextlib.contextmanager
    def session_turn(self) -> Iterator[list[SessionState]]:
        """The replicas' turn to write session rows (collector/store/lake_sessions.py)."""
        with self._session_lock.held(self.replica, self._seen) as (upto, foreign):
            began = time.perf_counter()
            changed = self._changed(upto) if foreign else []
            self.phases["read"] += time.perf_counter() - began
            self.stats["adopted"] += len(changed)
            self._seen = upto
            try:
                yield changed
            finally:
                self.stats["turns"] += 1
                self.turn_seconds += time.perf_counter() - began

    def _changed(self, upto: int) -> list[SessionState]:
        """Other replicas' session rows since this replica's last turn: from the journal, or
        from the change feed when the journal lacks a commit of theirs."""
        changed = self._session_lock.journaled(self.replica, self._seen, upto)
        if changed is not None:
            return changed
        self.stats["feed_reads"] += 1
        try:
            return changed_sessions(self.con, LAKE, self._seen, upto)
        except duckdb.Error as exc:
            if not is_unreachable(exc):
                raise
            raise StoreUnavailable(f"lake cannot be read: {exc}") from exc

    # -- opening and closing --------------------------------------------------------------
    def open(self) -> None:
        threads = self.threads or max(1, (os.cpu_count() or 2) - 1)
        self._db = connect(self.config, self.memory_limit, threads=threads)
        try:
            self._con = self._db.cursor()
            self._con.execute(f"USE {LAKE}")
            create_tables(self._transaction, self.location, CONFLICT_RETRIES)
            give_statistics(self._transaction)
            tune_writes(self._transaction)
            make_views(self._db)
            self._load_known()
            self._seen = current_snapshot(self._con, LAKE)
        except duckdb.Error as exc:
            self.close()
            raise StoreError(f"cannot open lake {self.location}: {exc}") from None

    def _load_known(self) -> None:
        con = self.con
        self._attribute_keys = set(con.execute(ATTRIBUTE_KEYS_LOAD).fetchall())
        self._known = known_ids(con)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The writer's cursor (default catalog: the lake)."""
        if self._con is None:
            raise StoreUnavailable("store is closed")
        return self._con

    def close(self) -> None:
        if self.stats["commits"]:
            log.info(
                "lake: %d commits, %d conflicts retried, %d reconciled; %d session turns"
                " holding the lock %.3f s (%s), waiting for it %.3f s; %d change-feed reads",
                self.stats["commits"],
                self.stats["conflicts"],
                self.stats["reconciled"],
                self.stats["turns"],
                self.turn_seconds,
                ", ".join(f"{k} {v:.3f}" for k, v in self.phases.items()),
                self._session_lock.waited,
                self.stats["feed_reads"],
            )
        self._session_lock.close()
        with self._lock:
            for con in (self._con, self._db):
                if con is not None:
                    with contextlib.suppress(duckdb.Error):
                        con.close()
            self._con = self._db = None

    # -- writing (the writer thread) ------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, tag: str | None = None):
        con = self.con
        con.begin()
        try:
            yield con
            if tag is not None:
                con.execute(f"CALL {LAKE}.set_commit_message(?, ?)", [self.replica, tag])
            con.commit()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            raise

    def append(
        self, tables: Mapping[str, Sequence[pa.Table]], sessions: SessionPlan | None = None
    ) -> None:
        """Commit the batches and the session rows in one lake transaction (see the module)."""
        self._committed(lambda tag: self._write(tables, sessions, None, tag))

    def execute(self, fn: Transaction) -> None:
        """Run statements in one lake transaction (maintenance, tests)."""
        self._committed(lambda tag: self._write({}, None, fn, tag))

    def _committed(self, write: Callable[[str], None]) -> None:
        """Run ``write`` with a fresh tag until it commits: conflicts are retried; when the
        lake is out of reach, raise StoreUnavailable, after making sure of the outcome of a
        commit that may have landed."""
        self._settle_unknown()
        for attempt in range(CONFLICT_RETRIES):
            tag = uuid.uuid4().hex
            try:
                write(tag)
                self.stats["commits"] += 1
                return
            except Exception as exc:
                if is_conflict(exc):
                    self.stats["conflicts"] += 1
                    time.sleep(min(0.5, 0.01 * 2**attempt))
                    continue
                if not is_unreachable(exc):
                    raise
                self._generation += 1  # state read before must be read again
                if self._landed(tag):
                    self.stats["reconciled"] += 1
                    return  # the commit landed although COMMIT failed
                raise StoreUnavailable(f"lake cannot be written: {exc}") from exc
        raise StoreUnavailable(f"lake commit kept conflicting ({CONFLICT_RETRIES} tries)")

    def _landed(self, tag: str) -> bool:
        """Whether the commit tagged ``tag`` is in the lake, asked until the catalog answers
        (for UNKNOWN_OUTCOME_WAIT seconds); if it does not, the question waits for the next
        write (``_unknown_tag``)."""
        deadline = time.monotonic() + UNKNOWN_OUTCOME_WAIT
        while True:
            try:
                return self._tag_committed(tag)
            except duckdb.Error:
                if time.monotonic() > deadline:
                    self._unknown_tag = tag
                    return False
                time.sleep(0.2)

    def _tag_committed(self, tag: str) -> bool:
        row = self.con.execute(
            f"SELECT count(*) FROM {LAKE}.snapshots() WHERE commit_message = ?", [tag]
        ).fetchone()
        return bool(row and row[0])

    def _settle_unknown(self) -> None:
        """A commit whose outcome stayed unknown was answered as failed (503): log when it
        did land after all (its records may then arrive twice, as the client retries them)."""
        if self._unknown_tag is None:
            return
        try:
            landed = self._tag_committed(self._unknown_tag)
        except duckdb.Error as exc:
            raise StoreUnavailable(f"lake cannot be reached: {exc}") from exc
        if landed:
            log.warning("a commit answered as failed while the catalog was away did land")
        self._unknown_tag = None

    def _write(
        self,
        tables: Mapping[str, Sequence[pa.Table]],
        plan: SessionPlan | None,
        also: Transaction | None,
        tag: str,
    ) -> None:
        new_keys: set[tuple[str, str]] = set()
        new_ids: dict[str, set[int]] = {}
        began = time.perf_counter()
        with self._transaction(tag) as con:
            for name, batches in tables.items():
                batch = one_table(batches)
                if batch is not None and name in SHARED_TABLES:
                    batch, new_ids[name] = unseen_rows(self._known[name], name, batch)
                    new_keys |= attribute_keys(name, batch)
                if batch is None:
                    continue
                insert_batch(con, storage_table(name), batch)
            new_keys -= self._attribute_keys
            if new_keys:
                con.executemany(
                    f"INSERT INTO {ATTRIBUTE_KEYS} VALUES (?, ?)", [list(k) for k in new_keys]
                )
            began = self._phase("records", began)
            if plan is not None:
                apply_plan(plan, con)
                began = self._phase("sessions", began)
                self._session_lock.journal(tag, plan)  # the others' shortcut to the rows
                began = self._phase("journal", began)
            if also is not None:
                also(con)
        self._phase("commit", began)
        self._attribute_keys |= new_keys
        for name, ids in new_ids.items():
            self._known[name] |= ids

    def _phase(self, name: str, began: float) -> float:
        now = time.perf_counter()
        self.phases[name] += now - began
        return now

    def probe(self) -> None:
        """Returns once the catalog answers and the data path can be written."""
        try:
            self.con.execute(f"SELECT * FROM {LAKE}.current_snapshot()").fetchall()
        except duckdb.Error as exc:
            raise StoreUnavailable(f"lake catalog cannot be reached: {exc}") from exc
        path = self.config.data_path
        if "://" not in path and not os.access(path, os.W_OK):
            raise StoreUnavailable(f"lake data path {path} cannot be written")
        self._settle_unknown()

    def maybe_checkpoint(self, idle: bool) -> None:
        """Nothing to fold: each commit wrote its Parquet files and catalog rows."""

    def checkpoint(self) -> None:
        """Nothing to fold (see maybe_checkpoint); compaction is the maintenance job's."""

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
        # DuckLake's maintenance runs on a connection of its own, beside the writer: nothing
        # for it to wait for.
        return [LakeMaintenance(self.config, self.replica, self.maintenance, forget, run)]

    # Forwarding keeps its queue in a store file; a lake has no place for one yet.
    def outbox_open(self, endpoints: Mapping[str, str], max_bytes: int) -> None:
        raise SettingsError(
            "forward.endpoints needs store.backend = 'duckdb' (a lake keeps no queue)"
        )

    def outbox_take(self, endpoint: str, limit: int) -> list[OutboxBatch]:
        return []

    def outbox_done(
        self,
        endpoint: str,
        seq: int,
        sent: tuple[int, int],
        rejected: tuple[int, int],
        error: str | None,
    ) -> None:
        return None

    def outbox_failed(self, endpoint: str, error: str) -> None:
        return None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the in-memory database whose views read the lake."""
        with self._lock:
            if self._db is None:
                raise StoreUnavailable("store is closed")
            return self._db.cursor()
