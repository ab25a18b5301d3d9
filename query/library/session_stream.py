"""A session's spans in trace order (SPEC 8), streamed: every span read once, a batch of whole
traces at a time, for output that prints the whole list (the CLI's ``-o jsonl`` and ``-o csv``).

The same records in the same order as the pages of :func:`query.library.traces.session_spans`
(traces by their first span's start, then trace id; a trace's spans by start, then span id; the
spans received by the listing's start), but without a cursor: that list finds each page's place
by reading the whole session's sort keys again (~0.5 s a page at 1 M spans, its memory growing
with the session). Here the session's traces are listed once, as one narrow row each (id, first
and last start, span count: ~10 MB of Arrow for 100,000 traces), and then read in order, a batch
of whole traces of about ``batch`` spans at a time: the session's spans of the batch's time
range (one query; the range's spans of other traces dropped), or by trace id when the range
holds many more spans than the batch (a long trace). What the process holds is the trace list
and one batch, whatever the session's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.store.reads import SPAN_ROWS

from .as_of import spans_high_water
from .filters import SpanFilter
from .paging import Key, Position, from_position, page_of, read_limit
from .records import fetch_records, span_rows_sql, table_records, with_resources
from .traces import WHOLE_READ, session_scope

Record = dict[str, Any]
Relieve = Callable[[], bool]
T = TypeVar("T")


def stream_session_spans(
    con: duckdb.DuckDBPyConnection,
    session_id: str,
    f: SpanFilter,
    batch: int,
    relieve: Relieve | None = None,
) -> Iterator[list[Record]]:
    """The spans of the session's traces in which at least one span matches ``f`` (its filters;
    its ``limit`` and ``cursor`` are ignored), in trace order, in lists of whole traces of at
    most ``batch`` spans; a longer trace in lists of ``batch`` of its spans. ``relieve``: called
    when DuckDB's budget cannot hold a batch's read (a small ``memory_limit``, wide spans);
    the read is tried again when it returns True (it may have raised the budget), else the
    out-of-memory error is raised."""
    as_of = spans_high_water(con)  # as session_spans: same spans
    mine, margs, matching, targs = session_scope(con, session_id, f, as_of)
    traces = con.execute(
        "SELECT trace_id, epoch_ns(min(start_time)) AS first, epoch_ns(max(start_time)) AS last,"
        f" count(*) AS spans, count(*) - count(start_time) AS unstarted FROM {SPAN_ROWS}"
        f" WHERE {mine}{matching} GROUP BY trace_id ORDER BY first, trace_id",
        [*margs, *targs],
    ).to_arrow_table()
    counts = traces["spans"].to_pylist()
    start = 0
    while start < len(counts):
        if counts[start] > batch:  # a trace of more than a batch: in batches of its own
            trace_id = traces["trace_id"][start].as_py()
            yield from _long_trace(con, mine, margs, trace_id, batch, relieve)
            start += 1
            continue
        end, spans = start, 0
        while end < len(counts) and spans + counts[end] <= batch:
            spans += counts[end]
            end += 1
        part = traces.slice(start, end - start)
        yield _retried(partial(_batch_spans, con, mine, margs, part, spans), relieve)
        start = end


def _retried(read: Callable[[], T], relieve: Relieve | None) -> T:
    """``read()``; when DuckDB's budget cannot hold it, again as long as ``relieve()`` (which
    may raise the budget) says to."""
    while True:
        try:
            return read()
        except duckdb.OutOfMemoryException:
            if relieve is None or not relieve():
                raise


# A long trace's spans in order (start, span id), keyset-paged within the trace.
TRACE_KEYS = (Key("start_time", ts=True), Key("span_id"))


def _long_trace(
    con: duckdb.DuckDBPyConnection,
    mine: str,
    margs: list[Any],
    trace_id: str,
    batch: int,
    relieve: Relieve | None,
) -> Iterator[list[Record]]:
    """The spans of one trace of more than ``batch`` spans, ``batch`` at a time: each batch the
    first after the previous one's last span (query.library.paging), found through the zone
    maps of their start times."""
    pos = Position()
    following: list[Position] = []

    def remember(p: Position) -> str:
        following.append(p)
        return "more"

    while True:
        after, aparams = from_position(TRACE_KEYS, pos)
        where = f" WHERE {mine} AND trace_id = ?" + "".join(f" AND {c}" for c in after)
        sql = span_rows_sql(where, "", True, keys=TRACE_KEYS)
        args = [*margs, trace_id, *aparams, read_limit(batch, pos)]
        rows = _retried(partial(fetch_records, con, sql, args), relieve)
        following.clear()
        page = page_of(rows, TRACE_KEYS, pos, batch, remember)
        if page.records:
            yield page.records
        if page.next is None:
            return
        pos = following[0]


def _batch_spans(
    con: duckdb.DuckDBPyConnection, mine: str, margs: list[Any], part: pa.Table, spans: int
) -> list[Record]:
    """The whole spans (``mine``: the listing's conditions) of the traces ``part`` (rows of the
    trace list, in trace order; ``spans``: their span count), in trace order."""
    ids = part["trace_id"]
    table = None
    lo, hi = pc.min(part["first"]).as_py(), pc.max(part["last"]).as_py()
    if lo is not None and pc.sum(part["unstarted"]).as_py() == 0:
        # By time range: every span of these traces starts in [lo, hi]; read whole unless the
        # range holds many more of the session's spans (a long trace), as _whole_spans does.
        cap = WHOLE_READ[0] * spans + WHOLE_READ[1]
        where = (
            f" WHERE {mine} AND start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)"
        )
        sql = span_rows_sql(where, "start_time, span_id", True)
        table = con.execute(sql, [*margs, lo, hi, cap + 1]).to_arrow_table()
        if table.num_rows > cap:
            table = None
    if table is None:  # by trace id
        marks = ", ".join("?" * len(ids))
        sql = span_rows_sql(f" WHERE {mine} AND trace_id IN ({marks})", "start_time, span_id")
        table = con.execute(sql, [*margs, *ids.to_pylist()]).to_arrow_table()
    # Trace order: a span's trace's place in ``part`` (null: another trace, dropped), its start
    # (nulls last, as DuckDB orders them), its id.
    # Arrow's own allocator (mimalloc) keeps what a batch freed: ~20 MB more at the peak.
    pool = pa.system_memory_pool()
    place = pc.index_in(table["trace_id"], value_set=ids.combine_chunks(), memory_pool=pool)
    table = pc.filter(table.append_column("_place", place), pc.is_valid(place), memory_pool=pool)
    order = [("_place", "ascending"), ("start_time", "ascending"), ("span_id", "ascending")]
    table = pc.take(table, pc.sort_indices(table, order, memory_pool=pool), memory_pool=pool)
    return table_records(with_resources(con, table.drop_columns(["_place"])))
