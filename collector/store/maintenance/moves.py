"""Moves: which settled spans of ``span_data`` move into ``span_archive`` next, and the move.

A move takes the oldest range of start times past the last compacted range once it holds
``compaction.rows`` spans older than ``compaction.after``, cut at a second boundary (the job
and its reasons: compaction.py). Three things ride along:

* **Late spans**: spans in span_data below the ranges moved already (a long span is sent when
  it ends; clock skew; an import) move with the next range, sorted into it, at most ``rows`` of
  them, whole seconds, oldest first.
* **Smaller ranges after a wait** (``compaction.wait``, off by default): when fewer than
  ``rows`` settled spans have waited that long past ``compaction.after`` (a busy period ended,
  and the rate that would fill a range is gone), they move anyway, as a range of fewer than
  ``rows`` spans: every search by room reads span_data whole, and these would otherwise stay
  there until the next range's worth arrives, hours at a quiet time. (Searches across rooms
  of the newest minutes read them faster unsorted: docs/performance.md.)
* **Taking such a range back**: the next move that starts where a smaller range ends rewrites
  the smaller range's spans with its own, sorted as one range, so that ranges keep about
  ``rows`` spans (a room's spans in few row groups) whatever the rate. Each wait costs one
  rewrite of at most ``rows`` spans.

A move is one transaction on the writer's connection: the spans appended to span_archive,
sorted by span_archive.SORT_KEY; the old copies deleted (from span_data, and of a range taken
back, from span_archive below the table's end before the append); the range's log records
sorted in place (archive_merge.sort_logs); its row in ``span_clusters`` written.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ...errors import StoreError
from ..schema import SPAN_CLUSTERS
from ..span_archive import ARCHIVE, ARCHIVE_SELECT, SORT_KEY, SPAN_RANGE
from ..statements import transaction
from .archive_merge import add_cluster, provisional, sort_logs

# Ranges are cut at whole seconds of start time: at 100 k spans/s a minute's spans would hold
# the writer ~40 s in one move (every request refused meanwhile), a second's ~0.5 s.
CUT_NS = 10**9
NO_FLOOR = -(2**62)  # epoch ns below any start time
# Each second's count of the spans in span_data that start in [?, ?) (epoch ns): ``b(m, c)``.
_SECONDS = (
    "WITH b AS (SELECT time_bucket(INTERVAL 1 second, start_time) AS m, count(*) AS c"
    " FROM span_data WHERE start_time >= make_timestamp_ns(?)"
    " AND start_time < make_timestamp_ns(?) GROUP BY m)"
)


@dataclass(frozen=True)
class Chunk:
    """A range of start times, ``[first_ns, last_ns)``, and how many spans it held when planned;
    ``late``: the range of start times before it, ``[from, to)``, whose spans in span_data (in
    ranges compacted already) move with it, or None; ``back``: the smaller range ``[from, to)``
    of span_archive that ends where it starts and is rewritten with it, or None."""

    first_ns: int
    last_ns: int
    spans: int
    late: tuple[int, int] | None = None
    back: tuple[int, int] | None = None


def next_chunk(
    con: duckdb.DuckDBPyConnection,
    now_ns: int,
    rows: int,
    after_ns: int,
    oldest_ns: int | None = None,
    wait_ns: int = 0,
) -> Chunk | None:
    """The oldest range past the last compacted one that holds at least ``rows`` spans, all of
    them older than ``now_ns - after_ns``, cut at the first second boundary where the count is
    reached (so a range holds at most a second of spans more than ``rows``); with ``wait_ns``,
    also all of those spans, to the end of the newest one's second, once the oldest is older
    than ``now_ns - after_ns - wait_ns``; None while neither is due. Spans older than
    ``oldest_ns`` (retention deletes them soon) are not counted. Reads only the row groups past
    the last compacted range (zone maps)."""
    newest = con.execute(
        "SELECT epoch_ns(first_start), epoch_ns(last_start), level, spans"
        f" FROM {SPAN_CLUSTERS} ORDER BY last_start DESC NULLS LAST LIMIT 1"
    ).fetchone()
    mark = None if newest is None else newest[1]
    upper = (now_ns - after_ns) // CUT_NS * CUT_NS  # the seconds that are over (data time)
    lower = max(x for x in (mark, oldest_ns, NO_FLOOR) if x is not None)
    # Each second's count, summed in order in SQL: a backlog of days is millions of seconds.
    first, cut, total, newest_second, settled = con.execute(
        _SECONDS + " SELECT epoch_ns((SELECT min(m) FROM b)),"
        " epoch_ns(min(m) FILTER (WHERE total >= ?)),"
        " min_by(total, m) FILTER (WHERE total >= ?),"
        " epoch_ns((SELECT max(m) FROM b)), (SELECT sum(c) FROM b)"
        " FROM (SELECT m, sum(c) OVER (ORDER BY m) AS total FROM b)",
        [lower, upper, rows, rows],
    ).fetchone()
    if cut is not None:
        last, spans = cut + CUT_NS, int(total)
    elif wait_ns > 0 and first is not None and first < upper - wait_ns:
        # Waited long enough: all that settled, up to the end of its newest second (spans of
        # later seconds that still arrive, an import's, are not late for this range).
        last, spans = newest_second + CUT_NS, int(settled)
    else:
        return None
    # From the last range on; past a gap left to retention, from the first second.
    start = mark if mark is not None and mark == lower else first
    if start != mark:
        return Chunk(start, last, spans)
    # Late spans lie below the last range; from the first second on, none are left below.
    back = (newest[0], newest[1]) if provisional(newest[2], newest[3], rows) else None
    return Chunk(start, last, spans, _late(con, oldest_ns, start, rows), back)


def _late(
    con: duckdb.DuckDBPyConnection, oldest_ns: int | None, before_ns: int, rows: int
) -> tuple[int, int] | None:
    """The start times ``[from, to)`` of the oldest spans in span_data that start before
    ``before_ns`` (the ranges compacted already), whole seconds until ``rows`` are reached;
    None when there are none. Spans older than ``oldest_ns`` are left to retention."""
    lower = NO_FLOOR if oldest_ns is None else oldest_ns
    first, last = con.execute(
        _SECONDS + " SELECT epoch_ns(min(m)), epoch_ns(max(m))"
        " FROM (SELECT m, sum(c) OVER (ORDER BY m) - c AS before FROM b) WHERE before < ?",
        [lower, before_ns, rows],
    ).fetchone()
    if first is None:
        return None
    return max(first, lower), min(last + CUT_NS, before_ns)


def compact(con: duckdb.DuckDBPyConnection, chunk: Chunk, now_ns: int | None = None) -> int:
    """Move the chunk's spans, and its late ones, into span_archive sorted by room, with the
    spans of the range it takes back, and sort its log records in log_data likewise (one
    transaction, on the writer's connection); returns how many spans left span_data."""
    where, params = SPAN_RANGE, [chunk.first_ns, chunk.last_ns]
    if chunk.late is not None:
        where, params = f"({SPAN_RANGE} OR {SPAN_RANGE})", [*chunk.late, *params]
    moving = f"SELECT {ARCHIVE_SELECT} FROM span_data WHERE {where}"
    first = chunk.first_ns if chunk.back is None else chunk.back[0]
    bounds = [first, chunk.last_ns]
    with transaction(con):
        if chunk.back is None:
            (spans,) = con.execute(
                f"INSERT INTO {ARCHIVE} {moving} ORDER BY {SORT_KEY}", params
            ).fetchone()
            moved = spans
        else:
            (end,) = con.execute(f"SELECT coalesce(max(rowid) + 1, 0) FROM {ARCHIVE}").fetchone()
            (spans,) = con.execute(
                f"INSERT INTO {ARCHIVE} SELECT * FROM ({moving} UNION ALL"
                f" SELECT * FROM {ARCHIVE} WHERE {SPAN_RANGE}) ORDER BY {SORT_KEY}",
                [*params, *chunk.back],
            ).fetchone()
            (kept,) = con.execute(
                f"DELETE FROM {ARCHIVE} WHERE {SPAN_RANGE} AND rowid < ?", [*chunk.back, end]
            ).fetchone()
            moved = spans - kept
            con.execute(
                f"DELETE FROM {SPAN_CLUSTERS} WHERE level = 0"
                " AND first_start = make_timestamp_ns(?) AND last_start = make_timestamp_ns(?)",
                list(chunk.back),
            )
        (deleted,) = con.execute(f"DELETE FROM span_data WHERE {where}", params).fetchone()
        if deleted != moved:  # cannot happen: rolled back rather than keep two copies
            raise StoreError(f"compaction moved {moved} spans but deleted {deleted}")
        sort_logs(con, bounds)
        add_cluster(con, bounds, spans, 0, now_ns)
    return int(moved)
