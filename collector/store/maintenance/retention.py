"""Retention: delete whole old data so the store stays bounded: by age (setting
``retention.max_age``) and by size (``retention.max_bytes``, size_cap.py).

Spans (new and archived), log records and metric points older than the cutoff go (by their own
time), with their ``trace_index`` rows; sessions whose ``last_seen_at`` is older go with their
events. Deletes run in slices of at most ``SLICE_NS`` of data time and about ``SLICE_ROWS``
records, each its own transaction: the background job hands each slice to the writer thread
(:meth:`Writer.run`), so ingest commits interleave with them instead of waiting behind one long
delete, and a busy minute's millions of spans are not held in one transaction. Data arrives
roughly in time order, so a slice's delete reads only the row groups of that slice (zone maps)
and leaves whole row groups empty, which the next checkpoint frees for reuse: the file stops
growing once retention deletes as fast as data arrives.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from ..schema import TRACE_INDEX, storage_table
from ..span_archive import ARCHIVE
from ..statements import transaction
from .periodic import Periodic, Run
from .size_cap import RECORD_TIMES, cutoff_for_share, excess_share, used_bytes

log = logging.getLogger("roomscope.retention")
CAP_ROUNDS = 3  # size-cap rounds in one run at most

SLICE_NS = 3_600 * 10**9  # one hour of data per delete transaction at most
SLICE_ROWS = 250_000  # and about this many records
# (signal, a table that stores it, its time column); rows with no time are judged by when
# they were received. Spans are in span_data and, once compacted, in span_archive.
STORED = [
    ("spans", storage_table("spans"), "start_time"),
    ("spans", ARCHIVE, "start_time"),
    ("logs", storage_table("logs"), "time"),
    ("metric_points", "metric_points", "time"),
]


@dataclass
class Pruned:
    """Rows deleted, per table."""

    rows: dict[str, int] = field(default_factory=dict)
    slices: int = 0  # delete transactions
    started: float = field(default_factory=time.monotonic)

    def add(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _deleted(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def slices(con: duckdb.DuckDBPyConnection, cutoff_ns: int) -> list[int]:
    """Upper bounds of the delete slices, oldest first, the last one being the cutoff: at most
    ``SLICE_NS`` of data time and about ``SLICE_ROWS`` records each (quantiles of the records'
    times), since a delete's memory and its commit's log grow with the rows it deletes."""
    before = f"FROM ({RECORD_TIMES}) WHERE t < make_timestamp_ns(?)"
    query = f"SELECT epoch_ns(min(t)), count(*) {before}"
    oldest, rows = con.execute(query, [cutoff_ns]).fetchone()
    if oldest is None:
        return [cutoff_ns]
    bounds = set(range(oldest + SLICE_NS, cutoff_ns, SLICE_NS))
    n = math.ceil(rows / SLICE_ROWS)
    if n > 1:
        shares = [i / n for i in range(1, n)]  # approx_quantile takes constants
        (times,) = con.execute(
            f"SELECT approx_quantile(epoch_ns(t), {shares!r}) {before}", [cutoff_ns]
        ).fetchone()
        bounds.update(t for t in times if oldest < t < cutoff_ns)
    return [*sorted(bounds), cutoff_ns]


def _delete_signal_rows(
    con: duckdb.DuckDBPyConnection, condition: str, params: list[Any], pruned: Pruned
) -> None:
    """DELETE from each signal table WHERE ``condition`` ({column}: the table's time column)."""
    for signal, table, column in STORED:
        sql = f"DELETE FROM {table} WHERE {condition.format(column=column)}"
        pruned.add(signal, _deleted(con, sql, params))


def delete_slice(con: duckdb.DuckDBPyConnection, upto_ns: int, pruned: Pruned) -> None:
    """Delete signal rows older than ``upto_ns`` (one transaction, on the writer's connection)."""
    with transaction(con):
        _delete_signal_rows(con, "{column} < make_timestamp_ns(?)", [upto_ns], pruned)
        con.execute(f"DELETE FROM {TRACE_INDEX} WHERE last_start < make_timestamp_ns(?)", [upto_ns])


def delete_rest(con: duckdb.DuckDBPyConnection, cutoff_ns: int, pruned: Pruned) -> set[str]:
    """Rows with no time received before the cutoff, and old sessions with their events;
    returns the deleted session ids."""
    with transaction(con):
        condition = "{column} IS NULL AND received_at < make_timestamp_ns(?)"
        _delete_signal_rows(con, condition, [cutoff_ns], pruned)
        ids = {
            r[0]
            for r in con.execute(
                "SELECT session_id FROM sessions WHERE last_seen_at < make_timestamp_ns(?)",
                [cutoff_ns],
            ).fetchall()
        }
        if ids:
            con.execute(
                "DELETE FROM session_events WHERE session_id IN"
                " (SELECT session_id FROM sessions WHERE last_seen_at < make_timestamp_ns(?))",
                [cutoff_ns],
            )
            pruned.add(
                "sessions",
                _deleted(
                    con,
                    "DELETE FROM sessions WHERE last_seen_at < make_timestamp_ns(?)",
                    [cutoff_ns],
                ),
            )
    return ids


def prune_connection(con: duckdb.DuckDBPyConnection, cutoff_ns: int) -> Pruned:
    """Everything older than the cutoff, slice by slice, on one connection (``roomscope prune``
    on a stopped store), then a checkpoint so the freed blocks are reused."""
    pruned = Pruned()
    for upto in slices(con, cutoff_ns):
        delete_slice(con, upto, pruned)
    delete_rest(con, cutoff_ns, pruned)
    con.execute("CHECKPOINT")
    return pruned


class Retention(Periodic):
    """The background job: every ``interval`` seconds, delete what is older than ``max_age``
    (0: no age limit), then, while the data passes ``max_bytes`` (0: no size limit), the
    oldest data (size_cap.py); through the writer, one slice per writer task, then checkpoint."""

    name = "retention"

    def __init__(
        self,
        run: Run,
        max_age: float,
        interval: float,
        forget: Callable[[set[str]], None] | None,
        *,
        max_bytes: int,
    ):
        super().__init__(run, interval, enabled=max_age > 0 or max_bytes > 0)
        self.max_age_ns = int(max_age * 1e9)
        self.max_bytes = max_bytes
        self.forget = forget
        self.stats["deleted"] = 0
        self.stats["over_cap"] = 0  # runs that found the data past max_bytes
        self.last = Pruned()  # what the last run that deleted anything deleted

    def run_once(self) -> Pruned:
        return self.prune_once()

    def prune_once(self, now_ns: int | None = None) -> Pruned:
        pruned = Pruned()
        if self.max_age_ns > 0:
            now = time.time_ns() if now_ns is None else now_ns
            self._delete_before(now - self.max_age_ns, pruned)
        if pruned.total:
            self._tidy(pruned)
        # The cutoff is estimated from row counts (a half-emptied row group frees nothing):
        # estimate again while the data is still over the cap and a round deleted something.
        for _ in range(CAP_ROUNDS if self.max_bytes > 0 else 0):
            capped = Pruned()
            cutoff = None if self.stopping else self._size_cutoff()
            if cutoff is None:
                break
            self._count(over_cap=1)
            self._delete_before(cutoff, capped)
            if capped.total:
                self._tidy(capped)
            for table, n in capped.rows.items():
                pruned.add(table, n)
            if not capped.total:
                break
        if pruned.total:
            self.last = pruned
        self._finished(deleted=pruned.total)
        return pruned

    def data_bytes(self) -> int:
        """The store's data: the file's used blocks plus its write-ahead log."""
        return self.run(lambda store: used_bytes(store.con) + store.wal_bytes()).result()

    def _size_cutoff(self) -> int | None:
        """None while the data is within ``max_bytes``; else the time before which the records
        to delete lie (after a checkpoint, so that the log is measured as blocks)."""
        if excess_share(self.data_bytes(), self.max_bytes) == 0:
            return None
        self.run(lambda store: store.checkpoint()).result()
        share = excess_share(self.data_bytes(), self.max_bytes)
        return self.run(lambda store: cutoff_for_share(store.con, share)).result()

    def _delete_before(self, cutoff: int, pruned: Pruned) -> None:
        bounds = self.run(lambda store: slices(store.con, cutoff)).result()
        for upto in bounds:
            if self.stopping:
                return
            self.run(lambda store, upto=upto: delete_slice(store.con, upto, pruned)).result()
            pruned.slices += 1
        ids = self.run(lambda store: delete_rest(store.con, cutoff, pruned)).result()
        if ids and self.forget is not None:
            self.run(lambda store: self.forget(ids)).result()

    def _tidy(self, pruned: Pruned) -> None:
        """After deletes: the shared rows nothing refers to any more, and a checkpoint (which
        frees the emptied blocks for reuse)."""
        pruned.add("shared", self.run(lambda store: store.prune_shared()).result())
        self.run(lambda store: store.checkpoint()).result()
        log.info(
            "retention deleted %s in %d slices, %.1f s",
            pruned.rows,
            pruned.slices,
            time.monotonic() - pruned.started,
        )
