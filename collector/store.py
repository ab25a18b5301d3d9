"""The storage interface and its embedded DuckDB implementation.

Everything that touches the DuckDB file for writing goes through :class:`Store`, so a second
backend (DuckLake with a PostgreSQL catalog) can take its place: open/migrate, append Arrow
batches and run a few statements in one transaction, hand out read cursors, close.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .errors import StoreError, StoreUnavailable
from .migrations import MIGRATIONS
from .schema import (
    ATTRIBUTE_KEYS_INSERT,
    ATTRIBUTE_KEYS_LOAD,
    SCHEMA_VERSION,
    SHARED_TABLES,
    storage_table,
)
from .span_archive import SPAN_ROWS

# New files use DuckDB's v1.5 storage format: its compression stores our spans in ~25% fewer
# bytes (tests/benchmarks/query.py). Older files keep the format they were made with.
STORAGE_VERSION = "v1.5.0"

Transaction = Callable[[duckdb.DuckDBPyConnection], None]


class Store(Protocol):
    path: str

    def open(self) -> None: ...

    def write(
        self, tables: Mapping[str, Sequence[pa.Table]], also: Transaction | None = None
    ) -> None: ...

    def cursor(self) -> duckdb.DuckDBPyConnection: ...

    def wal_bytes(self) -> int: ...

    def checkpoint(self) -> None: ...

    def close(self) -> None: ...


def _attribute_keys(table: str, batch: pa.Table | None) -> set[tuple[str, str]]:
    """The (map, key) rows of span_attribute_keys that new shared rows bring: a keyset's keys
    are span attribute keys, a resource's attribute keys resource ones."""
    if batch is None:
        return set()
    if table == "resources":
        keys = pc.unique(batch["attributes"].combine_chunks().keys)
        return {("resource", k) for k in keys.to_pylist() if k is not None}
    keys = pc.unique(pc.list_flatten(batch["keys"].combine_chunks()))
    return {("span", k) for k in keys.to_pylist() if k is not None}


def _one_table(batches: Sequence[pa.Table]) -> pa.Table | None:
    """One table of the batches, in contiguous columns: DuckDB appends one Arrow chunk of 4096
    spans ~25% faster than 8 chunks of 512 (the copy costs ~0.1 us a span)."""
    if not batches:
        return None
    batch = batches[0] if len(batches) == 1 else pa.concat_tables(batches)
    if not batch.num_rows:
        return None
    if any(column.num_chunks > 1 for column in batch.columns):
        batch = batch.combine_chunks()
    return batch


def _append(con: duckdb.DuckDBPyConnection, table: str, batch: pa.Table) -> None:
    """INSERT an Arrow table. DuckDB finds ``_roomscope_batch`` among this frame's locals (a
    replacement scan): ~1 ms less per 2,048 spans than register()/unregister(), most of it
    spent holding the GIL."""
    _roomscope_batch = batch  # read by DuckDB (a replacement scan finds it by name)
    con.execute(f"INSERT INTO {table} SELECT * FROM _roomscope_batch")


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT on ``con``; any exception rolls back and propagates."""
    con.begin()
    try:
        yield con
        con.commit()
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.rollback()
        raise


def rewrite_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    where: str,
    params: Sequence[object] = (),
    order: str = "rowid",
) -> int:
    """Copy the rows of ``table`` that match ``where`` to its end, in ``order``, and delete the
    old ones (those of a row id below the end before the copy), inside the caller's transaction
    (a merge piece, a reclaim step); returns how many. Raises StoreError when the copy and the
    delete disagree, so that the transaction rolls back rather than keep two copies."""
    (end,) = con.execute(f"SELECT coalesce(max(rowid) + 1, 0) FROM {table}").fetchone()
    (copied,) = con.execute(
        f"INSERT INTO {table} SELECT * FROM {table} WHERE {where} ORDER BY {order}", params
    ).fetchone()
    (deleted,) = con.execute(
        f"DELETE FROM {table} WHERE ({where}) AND rowid < ?", [*params, end]
    ).fetchone()
    if deleted != copied:  # cannot happen
        raise StoreError(f"rewriting {table}: copied {copied} rows but deleted {deleted}")
    return int(copied)


def migrate(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """Bring a store file to SCHEMA_VERSION; returns the version it had (0 for a new file)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS roomscope_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
    )
    row = con.execute("SELECT value FROM roomscope_meta WHERE key = 'schema_version'").fetchone()
    found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {found}, newer than this roomscope ({SCHEMA_VERSION});"
            " upgrade roomscope"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        with transaction(con):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute(
                "INSERT OR REPLACE INTO roomscope_meta VALUES ('schema_version', ?)", [str(version)]
            )
    return found


class DuckDBStore:
    """One DuckDB file; the writer thread is the only caller of :meth:`write`."""

    def __init__(
        self, path: str | Path, checkpoint_wal_bytes: int = 256 * 1024 * 1024, threads: int = 0
    ):
        self.path = str(path)
        self.checkpoint_wal_bytes = checkpoint_wal_bytes
        self.threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._reopen_pending = False  # a reopen after a failure did not succeed yet
        self._attribute_keys: set[tuple[str, str]] = set()  # rows of span_attribute_keys
        self._known: dict[str, set[int]] = {t: set() for t in SHARED_TABLES}  # ids held
        self._threads = 1  # DuckDB threads for appends (store.threads, resolved at open)

    def open(self) -> None:
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(
                    f"cannot open store {self.path}: directory {parent} does not exist"
                )
        try:
            self._con = duckdb.connect(
                self.path,
                config={"storage_compatibility_version": STORAGE_VERSION},
            )
            # A long statement (a migration, a compaction) would draw a progress bar on the
            # collector's stderr.
            self._con.execute("SET enable_progress_bar = false")
            # The writer checkpoints at checkpoint_wal_bytes itself (with every core, see
            # checkpoint()); DuckDB's own trigger, inside a commit, is only the safety net.
            limit = 2 * int(self.checkpoint_wal_bytes)
            self._con.execute(f"SET checkpoint_threshold = '{limit}B'")
            self._threads = self.threads or max(1, (os.cpu_count() or 2) - 1)
            self._con.execute(f"SET threads = {int(self._threads)}")
        except duckdb.IOException as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        migrate(self._con, self.path)
        self._attribute_keys = set(self._con.execute(ATTRIBUTE_KEYS_LOAD).fetchall())
        self._load_known()

    def _load_known(self) -> None:
        for table, id_column in SHARED_TABLES.items():
            rows = self.con.execute(f"SELECT {id_column} FROM {table}").fetchall()
            self._known[table] = {r[0] for r in rows}

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreUnavailable("store is closed")
        return self._con

    def write(
        self, tables: Mapping[str, Sequence[pa.Table]], also: Transaction | None = None
    ) -> None:
        """Append batches to their tables and run ``also`` in the same transaction.

        ``tables`` maps signals (``spans``, ``logs``, ``metric_points``) and the rows they refer
        to (SHARED_TABLES, ``trace_index``) to batches; shared rows the store already holds are
        skipped."""
        if self._con is None and self._reopen_pending:
            self.reopen()  # an earlier failure left the store closed: try again
        con = self.con
        new_keys: set[tuple[str, str]] = set()
        new_ids: dict[str, set[int]] = {}
        with transaction(con):
            for name, batches in tables.items():
                batch = _one_table(batches)
                if batch is not None and name in SHARED_TABLES:
                    batch, new_ids[name] = self._unseen(name, batch)
                    new_keys |= _attribute_keys(name, batch)
                if batch is None:
                    continue
                _append(con, storage_table(name), batch)
            new_keys -= self._attribute_keys
            if new_keys:
                con.executemany(ATTRIBUTE_KEYS_INSERT, [list(k) for k in new_keys])
            if also is not None:
                also(con)
        self._attribute_keys |= new_keys
        for name, ids in new_ids.items():
            self._known[name] |= ids

    def _unseen(self, table: str, batch: pa.Table) -> tuple[pa.Table | None, set[int]]:
        """The rows of a shared table whose id the store does not hold yet (each id once)."""
        known = self._known[table]
        fresh: dict[int, int] = {}
        for i, rid in enumerate(batch[SHARED_TABLES[table]].to_pylist()):
            if rid not in known:
                fresh.setdefault(rid, i)
        if not fresh:
            return None, set()
        if len(fresh) < batch.num_rows:
            batch = batch.take(list(fresh.values()))
        return batch, set(fresh)

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
                used = " UNION ".join(
                    f"SELECT {column} FROM {source} WHERE {column} IS NOT NULL"
                    for source in sources
                )
                row = con.execute(
                    f"DELETE FROM {table} WHERE {id_column} NOT IN ({used})"
                ).fetchone()
                deleted += int(row[0]) if row else 0
        self._load_known()
        return deleted

    def execute(self, fn: Transaction) -> None:
        """Run statements in one transaction on the writer's connection."""
        self.write({}, fn)

    def wal_bytes(self) -> int:
        """Size of the write-ahead log not yet checkpointed into the file."""
        try:
            return os.path.getsize(self.path + ".wal")
        except OSError:
            return 0

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file (the writer thread, when idle or when the log
        reached checkpoint_wal_bytes), on every core: commits wait for a checkpoint anyway, and
        DuckDB compresses row groups in parallel (600 k spans: 1.1 s on 2 threads, 1.8 s on 1)."""
        with self.all_cores():
            self.con.execute("CHECKPOINT")

    @contextlib.contextmanager
    def all_cores(self) -> Iterator[None]:
        """DuckDB runs on every core meanwhile (work the writer waits for anyway: checkpoints,
        compaction), then on ``store.threads`` again (appends)."""
        self.con.execute(f"SET threads = {os.cpu_count() or 1}")
        try:
            yield
        finally:
            self.con.execute(f"SET threads = {int(self._threads)}")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database, for readers (thread-safe to create)."""
        with self._lock:
            return self.con.cursor()

    def reopen(self) -> None:
        """Close and open again (after an I/O failure invalidated the database).

        Readers' cursors are closed with the old connection (they get a clean
        ``ConnectionException``). When opening fails (the disk is still unusable), the store stays
        closed and the next :meth:`write` tries again; until then :meth:`write` and
        :meth:`cursor` raise :class:`StoreUnavailable`.
        """
        self.close()
        self._reopen_pending = True
        try:
            self.open()
        except (StoreError, duckdb.Error, OSError) as exc:
            with contextlib.suppress(Exception):
                self.close()
            raise StoreUnavailable(f"cannot reopen store {self.path}: {exc}") from None
        self._reopen_pending = False

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                with contextlib.suppress(duckdb.Error):
                    self._con.execute("CHECKPOINT")
                self._con.close()
                self._con = None
