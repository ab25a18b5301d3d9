"""The as-of point of a listing (SPEC 8): what "the store when the first page was read" is.

A list whose order depends on records that may still arrive (a session's start, a trace's first
span) holds its pages to the records received by one receive time, fixed by its first page and
kept in its cursor. That time is the store's receive high-water mark then, the newest
``received_at`` of its records: the collector commits records in the order it receives them,
so every record received by then is in the store already, and every record committed later is
received after it. (The wall clock would not do: a record received before it may still wait in
the writer's queue, and show on a later page only.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from collector.store.reads import LOG_ROWS, SPAN_ROWS

# The signal tables and the column that places their records in time (collector's
# session_records.TIME_COLUMN, on the stored rows).
TIMED = ((SPAN_ROWS, "start_time"), (LOG_ROWS, "time"), ("metric_points", "time"))
# The first page looks for its as-of point among the records received in this window before
# its clock; a store that received none in it takes the window's start (a record received
# earlier and still not committed, a minute later, is not waited for).
RECENT_NS = 60 * 10**9


@contextmanager
def one_snapshot(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The reads inside see the store as of one moment (one read transaction), however many
    commits land meanwhile: a page and the as-of point read for it agree. A connection already
    in a transaction is one snapshot already."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:
        yield
        return
    try:
        yield
    finally:
        con.execute("ROLLBACK")


def high_water(con: duckdb.DuckDBPyConnection, now_ns: int, tables: tuple[str, ...] = ()) -> int:
    """The as-of point (epoch ns) of a listing whose first page is read now: the newest receive
    time among the records of the last RECENT_NS, else the start of that window; ``tables``:
    of those signal tables only (default all three)."""
    floor = now_ns - RECENT_NS
    names = tables or tuple(table for table, _ in TIMED)
    parts = " UNION ALL ".join(
        f"SELECT max(received_at) AS r FROM {table} WHERE received_at > make_timestamp_ns(?)"
        for table in names
    )
    sql = f"SELECT epoch_ns(max(r)) FROM ({parts})"
    (newest,) = con.execute(sql, [floor] * len(names)).fetchone()
    return floor if newest is None else int(newest)


def spans_high_water(con: duckdb.DuckDBPyConnection) -> int:
    """The as-of point of a listing of spans whose first page is read now."""
    return high_water(con, time.time_ns(), (SPAN_ROWS,))
