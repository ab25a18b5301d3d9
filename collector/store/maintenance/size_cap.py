"""The size cap of retention (setting ``retention.max_bytes``): when the store's data passes the
cap, the oldest data goes until it is back under it, as otel-desktop-viewer's size limit does.

What is measured is the data: the database file's used blocks plus its write-ahead log, not the
file's length, which counts free blocks too. Deleted rows free their blocks at the next
checkpoint; appends then reuse them (lowest first), so the file stops growing once the cap is
reached, and the compaction job's reclaim step (reclaim.py) gives back free blocks at the end
of the file. When the data passes the cap, the job deletes everything older than the time
before which ``1 - LOW_WATER * cap / data`` of the stored records lie (spans, log records and
metric points alike, an approximate quantile of their times), through the same slices (at most
an hour, about 250,000 records), each a transaction of the writer, as the age limit
(retention.py): the store then holds about ``LOW_WATER`` of the cap, and the next deletes come
after new data filled the rest, not at every run.
"""

from __future__ import annotations

import duckdb

from ..schema import storage_table
from ..span_archive import ARCHIVE

LOW_WATER = 0.9  # a cap's deletes bring the data down to this share of the cap

# The times of every stored record (the tables of retention.STORED).
RECORD_TIMES = " UNION ALL ".join(
    f"SELECT {column} AS t FROM {table}"
    for table, column in (
        (storage_table("spans"), "start_time"),
        (ARCHIVE, "start_time"),
        (storage_table("logs"), "time"),
        ("metric_points", "time"),
    )
)


def used_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Bytes of the database file's used blocks (its data; free blocks not counted)."""
    row = con.execute("SELECT block_size, used_blocks FROM pragma_database_size()").fetchone()
    return int(row[0]) * int(row[1]) if row else 0


def excess_share(data_bytes: int, max_bytes: int) -> float:
    """The share of the stored records to delete: 0 while ``data_bytes`` is within the cap,
    else enough to bring it down to ``LOW_WATER`` of the cap."""
    if max_bytes <= 0 or data_bytes <= max_bytes:
        return 0.0
    return 1.0 - LOW_WATER * max_bytes / data_bytes


def cutoff_for_share(con: duckdb.DuckDBPyConnection, share: float) -> int | None:
    """The time (epoch ns) before which about ``share`` of the stored records lie; None when
    the store holds no record with a time."""
    if share <= 0:
        return None
    q = float(min(share, 1.0))  # approx_quantile takes a constant, not a parameter
    query = f"SELECT approx_quantile(epoch_ns(t), {q!r}) FROM ({RECORD_TIMES})"
    row = con.execute(query).fetchone()
    if row is None or row[0] is None:
        return None
    return int(row[0]) + 1  # a stored time: the records at it go too
