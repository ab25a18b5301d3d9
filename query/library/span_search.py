"""The span search (``traces``, SPEC 5): a page of the spans matching a filter, newest first.

The matches are counted in disjoint windows of start time, newest first (the newest 10 seconds,
minute, 3 minutes, quarter hour, hour, day, then the rest), on the filtered columns alone,
until the page's worth is found; then the page's whole rows are read once, from the oldest
match found on.

* Every span is filtered once at most: a room's rare errors cost one pass over the data, not
  one per window (each window used to reach back from the newest span).
* Only the page's rows are read whole. Reading a window's matches whole decoded the whole row of
  every match (its vector of attribute lists) until the top-N dropped it: 42 ms of the 73 that
  the burst shape's query 1 took at 3 M spans (tests/benchmarks/query.py), the filter ~5.
* While no match is found, each window reaches one further (10 seconds, then from there to
  3 minutes, to an hour, to all of time): a room's rare errors in a 30-day archive cost four
  counts instead of seven (query 1 of the archive shape: 56 -> 52 ms cold, 10 M spans).
* A window the matches so far show too short for the page is skipped: the time from the newest
  match back that held them, scaled to the page, is read at once. The window that fills the
  page has its matching starts sorted (the page's oldest is the need-th newest), so windows
  are short where the data is dense: in the burst's hour at 10 M spans, sorting the 210 k
  matches of ``traces --attrs tool=search`` in a quarter hour took 37 ms, those in 3 minutes
  a few.
"""

from __future__ import annotations

from typing import Any

import duckdb

from collector.store.reads import SPAN_ROWS

from .filters import SpanFilter
from .paging import (
    Key,
    Page,
    decode_cursor,
    encode_cursor,
    fingerprint,
    from_position,
    order_by,
    page_of,
    read_limit,
)
from .records import fetch_records, span_rows_sql
from .search import attribute_key_maps, filter_keys, span_where, where_sql
from .traces import start_bounds

Record = dict[str, Any]
SEARCH_KEYS = (Key("start_time", desc=True, ts=True), Key("span_id"), Key("trace_id"))
# A window more costs a statement (~2 ms); the quarter hour keeps a room's errors in a busy
# hour from reading all of it (the newest 101 matches of the burst shape's query 1 lie in its
# newest ~15 minutes at 10 M spans).
SPAN_WINDOWS_NS = tuple(
    s * 10**9 for s in (10, 60, 180, 900, 3_600, 86_400)
)  # fmt: skip


def search_spans(con: duckdb.DuckDBPyConnection, f: SpanFilter, limit: int) -> Page:
    """A page of the spans matching every condition, newest first (by start time, then span
    and trace id: a total order, so pages neither repeat nor skip a span while ingest goes on).
    A cursor's page starts at its span's start time, and so do the windows."""
    n = f.limit or limit
    listed = fingerprint("traces", {**f.__dict__, "limit": None, "cursor": None})
    pos = decode_cursor(f.cursor, "traces", listed, SEARCH_KEYS)
    conds, params = span_where(f, key_maps=attribute_key_maps(con, filter_keys(f)))
    after, aparams = from_position(SEARCH_KEYS, pos)
    count = Counter(con, [*conds, *after], [*params, *aparams])
    want = read_limit(n, pos)
    newest, first = start_bounds(con)
    if newest is not None and f.until is not None:
        newest = min(newest, f.until)
    if newest is not None and pos.key:
        newest = min(newest, pos.key[0])
    floor = max((t for t in (f.since, first) if t is not None), default=None)
    lowers = [*window_bounds(newest, floor), None]  # None: the rest, no lower bound
    found, oldest, latest, upper = 0, None, None, None
    while True:
        lower = lowers.pop(0)
        if found and upper is not None and latest is not None:
            # The time from the newest match back that held the matches so far, scaled to
            # the page: shorter windows are skipped.
            reach = latest - (latest - upper) * want // found
            while lower is not None and lower > reach:
                lower = lowers.pop(0)
        if lower is None and upper is None:  # no windows: the page is all there is
            break
        got, low, high = count.window(lower, upper, want - found)
        if got:
            found, oldest = found + got, low
            latest = high if latest is None else latest
        if found >= want or lower is None:
            break
        if not found and len(lowers) > 1:  # none yet: the next window reaches one further
            lowers.pop(0)
        upper = lower
    rows: list[Record] = []
    if oldest is not None or upper is None:  # else every window was counted: no match
        where, args = count.conds, count.params
        if oldest is not None:
            where, args = [*where, "start_time >= make_timestamp_ns(?)"], [*args, oldest]
        sql = span_rows_sql(where_sql(where), order_by(SEARCH_KEYS), True, keys=SEARCH_KEYS)
        rows = fetch_records(con, sql, [*args, want])
    return page_of(rows, SEARCH_KEYS, pos, n, lambda p: encode_cursor("traces", listed, p))


class Counter:
    """Counts a filter's matches (``conds`` on span_rows, their ``params``) in windows of start
    time, reading the filtered columns only."""

    def __init__(self, con: duckdb.DuckDBPyConnection, conds: list[str], params: list[Any]):
        self.con, self.conds, self.params = con, conds, params

    def window(
        self, lower: int | None, upper: int | None, need: int
    ) -> tuple[int, int | None, int | None]:
        """How many matches start in [lower, upper) (epoch ns; None: unbounded), up to
        ``need``, and the earliest and latest start of the ``need`` newest (a sort of the
        window's matching starts)."""
        window = ["start_time >= make_timestamp_ns(?)"] if lower is not None else []
        window += ["start_time < make_timestamp_ns(?)"] if upper is not None else []
        bounds = [t for t in (lower, upper) if t is not None]
        got, low, high = self.con.execute(
            "SELECT count(*), epoch_ns(min(start_time)), epoch_ns(max(start_time)) FROM (SELECT"
            f" start_time FROM {SPAN_ROWS}{where_sql([*self.conds, *window])}"
            " ORDER BY start_time DESC LIMIT ?)",
            [*self.params, *bounds, need],
        ).fetchone()
        return got, low, high


def window_bounds(newest: int | None, floor: int | None) -> list[int]:
    """The lower bounds (epoch ns) of the span search's windows of start time, newest first:
    ``newest`` less each of SPAN_WINDOWS_NS, none at or below ``floor`` (the filter's since,
    or about the oldest data's start). The first window has no upper bound, each other ends
    where the one before begins, and a last one without a lower bound holds the rest."""
    if newest is None:
        return []
    bounds = [newest - width for width in SPAN_WINDOWS_NS]
    return [b for b in bounds if floor is None or b > floor]
