"""A lake's maintenance, by DuckLake's own functions, on one replica at a time.

Every replica runs this job; each round it asks the catalog database for a lease (a row of
``roomscope_leases`` in PostgreSQL, taken with one conditional UPDATE: the holder's, or any
replica's once the lease has expired). The holder renews it each round; when it dies, the lease
runs out after ``LEASE_SECONDS`` and the next replica to ask takes over. An interrupted run
leaves nothing half-done: each DuckLake function commits a snapshot or nothing.

A round, on a connection of its own (the writer's commits go on meanwhile):

1. Retention (``retention.max_age``): old records deleted, sessions last seen before the
   cutoff with their events. With a window of a day or more the cutoff is the start of its
   UTC day (:func:`retention_cutoff`), so retention drops whole day partitions: DuckLake ends
   each of their files in the catalog (no delete files, no rewrite), and the cleanup removes
   them; a shorter window deletes by time, leaving delete files that ``rewrite_data_files``
   folds in.
2. Extra copies of shared rows (two replicas inserted the same resource) deleted.
3. ``ducklake_merge_adjacent_files`` (sorted by each table's sort order) at most
   ``MAX_FILES`` files a round, and ``ducklake_rewrite_data_files`` for files with many deleted
   rows, within the memory budget (spilling to a temporary folder past it: unbounded merges
   are what users report killed by the kernel).
4. ``ducklake_expire_snapshots`` and ``ducklake_cleanup_old_files`` older than
   ``KEEP_SECONDS`` (never ``cleanup_all``, which would delete the files of commits still in
   flight on other replicas).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg

from .interface import Run
from .lake_connect import LAKE, LakeConfig, connect
from .lake_layout import LEASES

log = logging.getLogger("roomscope.lake")

LEASE_SECONDS = 30.0  # a dead holder's lease is free again after this long
MAX_FILES = 200  # files one merge round compacts at most
KEEP_SECONDS = 600.0  # snapshots and replaced files younger than this stay (readers in flight)
_LEASES_SQL = (
    f"CREATE TABLE IF NOT EXISTS {LEASES}"
    " (name text PRIMARY KEY, holder text NOT NULL, expires timestamptz NOT NULL)"
)
# Take the lease when it is free, expired or ours: one statement, atomic in PostgreSQL.
_TAKE_LEASE = (
    f"INSERT INTO {LEASES} AS l VALUES (%s, %s, now() + %s::interval) ON CONFLICT (name)"
    " DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
    " WHERE l.holder = excluded.holder OR l.expires < now() RETURNING holder"
)

DAY_NS = 86_400 * 10**9  # the lake's partitions are UTC days (lake_layout.PARTITIONS)


def retention_cutoff(now_ns: int, max_age: float) -> int:
    """Records older than this (epoch ns) go: ``now - max_age``, moved back to the start of
    its UTC day when ``max_age`` is a day or more, so that only whole day partitions are
    deleted (records are kept up to a day longer than the window)."""
    cutoff = now_ns - int(max_age * 1e9)
    if max_age * 1e9 >= DAY_NS:
        cutoff -= cutoff % DAY_NS
    return cutoff


# (table, time column) of what retention deletes.
RETAINED = [
    ("span_data", "start_time"),
    ("log_data", "time"),
    ("metric_points", "time"),
    ("trace_index", "last_start"),
]


@dataclass(frozen=True)
class MaintenancePlan:
    """What the job does (settings ``retention.max_age``, ``compaction.interval``,
    ``store.memory_limit``, resolved)."""

    max_age: float  # seconds; 0 keeps everything
    interval: float  # seconds between rounds
    memory_limit: str
    keep: float = KEEP_SECONDS
    max_files: int = MAX_FILES


class LakeMaintenance:
    """The maintenance job of a lake replica (a :class:`~collector.store.interface.Job`)."""

    name = "maintenance"

    def __init__(
        self,
        config: LakeConfig,
        replica: str,
        plan: MaintenancePlan,
        forget: Callable[[set[str]], None] | None,
        run: Run | None = None,
    ):
        self.run = run  # the writer's Writer.run: where ``forget`` must be called
        self.config = config
        self.replica = replica
        self.plan = plan
        self.forget = forget
        self.stats: dict[str, int] = {"runs": 0, "led": 0, "merged": 0, "deleted": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._pg: psycopg.Connection | None = None  # the lease's

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="roomscope-lake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._close()

    def _loop(self) -> None:
        while not self._stop.wait(self.plan.interval):
            try:
                self.run_once()
            except Exception as exc:  # the catalog may be away; the next round tries again
                log.warning("lake maintenance failed: %s", exc)
                self._close()

    def _close(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(psycopg.Error):
                self._pg.close()
            self._pg = None
        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = None

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = connect(self.config, self.plan.memory_limit, threads=1)
            spill = Path(tempfile.gettempdir()) / "roomscope-lake-spill"
            con.execute(f"SET temp_directory = '{_quote(str(spill))}'")
            self._con = con
        return self._con

    def lead(self) -> bool:
        """Take or renew the lease; True when this replica holds it now."""
        if self._pg is None or self._pg.closed:
            self._pg = psycopg.connect(self.config.catalog, autocommit=True, connect_timeout=5)
            self._pg.execute(_LEASES_SQL)
        row = self._pg.execute(
            _TAKE_LEASE, ["maintenance", self.replica, f"{LEASE_SECONDS} seconds"]
        ).fetchone()
        return row is not None

    def run_once(self) -> dict[str, int]:
        """One round if this replica leads (see the module); what it did."""
        done = {"runs": 1}
        if not self.lead():
            self._add(done)
            return done
        done["led"] = 1
        con = self._connection()
        if self.plan.max_age:
            done["deleted"] = self._retention(con)
        done["deleted"] = done.get("deleted", 0) + self._dedupe(con)
        log.info("merging adjacent files (at most %d)", self.plan.max_files)
        started = time.monotonic()
        merged = con.execute(
            f"CALL ducklake_merge_adjacent_files('{LAKE}', max_compacted_files => ?)",
            [self.plan.max_files],
        ).fetchall()
        done["merged"] = len(merged)
        log.info("merged %d files in %.1f s", len(merged), time.monotonic() - started)
        con.execute(f"CALL ducklake_rewrite_data_files('{LAKE}')").fetchall()
        older = f"now() - INTERVAL '{float(self.plan.keep)} seconds'"
        con.execute(f"CALL ducklake_expire_snapshots('{LAKE}', older_than => {older})").fetchall()
        con.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', older_than => {older})").fetchall()
        self._add(done)
        return done

    def _add(self, done: dict[str, int]) -> None:
        for key, n in done.items():
            self.stats[key] = self.stats.get(key, 0) + n

    def _retention(self, con: duckdb.DuckDBPyConnection) -> int:
        cutoff = retention_cutoff(time.time_ns(), self.plan.max_age)
        deleted = 0
        con.begin()
        try:
            for table, column in RETAINED:
                row = con.execute(
                    f"DELETE FROM {LAKE}.{table} WHERE {column} < make_timestamp_ns(?)", [cutoff]
                ).fetchone()
                deleted += int(row[0]) if row else 0
            gone = [
                r[0]
                for r in con.execute(
                    f"SELECT session_id FROM {LAKE}.sessions"
                    " WHERE last_seen_at < make_timestamp_ns(?)",
                    [cutoff],
                ).fetchall()
            ]
            if gone:
                con.execute(
                    f"DELETE FROM {LAKE}.session_events WHERE list_contains(?, session_id)", [gone]
                )
                con.execute(
                    f"DELETE FROM {LAKE}.sessions WHERE list_contains(?, session_id)", [gone]
                )
            con.commit()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            raise
        if gone and self.forget is not None:
            forget, ids = self.forget, set(gone)
            if self.run is not None:  # the tracker belongs to the writer thread
                self.run(lambda _store: forget(ids))
            else:
                forget(ids)
        return deleted + len(gone)

    def _dedupe(self, con: duckdb.DuckDBPyConnection) -> int:
        """Delete the extra copies of shared rows (same id, same content)."""
        deleted = 0
        for table, key in (("resources", "resource_id"), ("attribute_keysets", "keyset_id")):
            row = con.execute(
                f"SELECT count(*) - count(DISTINCT {key}) FROM {LAKE}.{table}"
            ).fetchone()
            if not row or not row[0]:
                continue
            con.begin()
            try:
                con.execute(
                    f"CREATE TEMP TABLE one AS SELECT DISTINCT ON ({key}) * FROM {LAKE}.{table}"
                    f" WHERE {key} IN (SELECT {key} FROM {LAKE}.{table} GROUP BY 1"
                    " HAVING count(*) > 1)"
                )
                con.execute(f"DELETE FROM {LAKE}.{table} WHERE {key} IN (SELECT {key} FROM one)")
                con.execute(f"INSERT INTO {LAKE}.{table} SELECT * FROM one")
                con.execute("DROP TABLE one")
                con.commit()
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise
            deleted += int(row[0])
        return deleted


def _quote(text: str) -> str:
    return text.replace("'", "''")
