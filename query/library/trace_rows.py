"""Trace search as trace rows, the way Jaeger and Tempo users read it: the newest traces holding a
matching span, each with its root service and name, start, duration, span count, error count,
rooms and sessions, and its matching spans; paged with a cursor (SPEC 8).

The traces come from :func:`query.library.trace_search.search_traces` (what Tempo's search
answers); the counts are read per trace within its extent (its first start to its end), so a
page of traces costs a few row groups each, not a scan.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import duckdb

from collector.store.reads import SPAN_ROWS

from .as_of import spans_high_water
from .errors import QueryError
from .filters import SpanFilter
from .paging import Key, Page, Position, decode_cursor, encode_cursor, fingerprint
from .trace_search import search_traces
from .values import format_ts

Record = dict[str, Any]
LIST = "trace_rows"
# Newest matching span first, then trace id: the order of find_traces.
KEYS = (Key("last_match", desc=True, ts=True), Key("trace_id"))
PER_TRACE = 5  # matching spans listed per trace


COUNTS = (
    "SELECT trace_id, count(*), count(*) FILTER (WHERE status_code = 'ERROR'),"
    " list(DISTINCT room) FILTER (WHERE room IS NOT NULL),"
    " list(DISTINCT session_id) FILTER (WHERE session_id IS NOT NULL)"
    f" FROM {SPAN_ROWS} WHERE {{ids}} AND start_time"
    " BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?) GROUP BY trace_id"
)
# Traces whose extents all fit in this much time are counted in one read of that range; else
# each in its own extent (one small read each, however far apart they are).
ONE_READ_NS = 3_600 * 10**9


def _counts(con: duckdb.DuckDBPyConnection, found: list[Record]) -> dict[str, tuple[Any, ...]]:
    """Per trace: span count, error count, rooms and sessions, read within the trace's extent."""
    if not found:
        return {}
    lo = min(t["start_ns"] for t in found)
    hi = max(t["start_ns"] + t["duration_ns"] for t in found)
    if hi - lo <= ONE_READ_NS:
        sql = COUNTS.format(ids="list_contains(?, trace_id)")
        rows = con.execute(sql, [[t["trace_id"] for t in found], lo, hi]).fetchall()
    else:
        parts, params = [], []
        for t in found:
            parts.append(COUNTS.format(ids="trace_id = ?"))
            params += [t["trace_id"], t["start_ns"], t["start_ns"] + t["duration_ns"]]
        rows = con.execute(" UNION ALL ".join(parts), params).fetchall()
    return {r[0]: r[1:] for r in rows}


def trace_rows(
    con: duckdb.DuckDBPyConnection, f: SpanFilter, limit: int, per_trace: int = PER_TRACE
) -> Page:
    """A page of the newest traces with a span matching ``f`` (newest match first)."""
    n = f.limit or limit
    listed = fingerprint(LIST, {**f.__dict__, "limit": None, "cursor": None})
    pos = decode_cursor(f.cursor, LIST, listed, KEYS)
    after = (int(pos.key[0]), str(pos.key[1])) if pos.key else None
    # A trace's newest match moves when a newer matching span arrives: the pages hold the spans
    # received by the first page's as-of point (query.library.as_of), so none moves a trace
    # from a page still to come to one already read; a new listing shows them.
    h = pos.extra.get("h")
    if h is None:
        h = spans_high_water(con)
    elif not isinstance(h, int) or isinstance(h, bool):
        raise QueryError("invalid cursor")
    found = search_traces(con, replace(f, limit=None, cursor=None), n + 1, per_trace, after, h)
    shown = found[:n]
    counts = _counts(con, shown)
    records = []
    for t in shown:
        spans, errors, rooms, sessions = counts.get(t["trace_id"], (0, 0, [], []))
        records.append(
            {
                "trace_id": t["trace_id"],
                "root_service": t["root_service"],
                "root_name": t["root_name"],
                "start_time": format_ts(t["start_ns"]),
                "duration_ns": t["duration_ns"],
                "span_count": spans,
                "error_count": errors,
                "rooms": sorted(rooms or []),
                "sessions": sorted(sessions or []),
                "matched": t["matched"],
                "spans": [
                    {
                        "span_id": s["span_id"],
                        "name": s["name"],
                        "service_name": s["service_name"],
                        "start_time": format_ts(s["start_ns"]),
                        "duration_ns": s["duration_ns"],
                    }
                    for s in t["spans"]
                ],
            }
        )
    last = shown[-1] if shown else None
    more = len(found) > n and last is not None and last["last_match_ns"] is not None
    cursor = (
        encode_cursor(
            LIST, listed, Position((last["last_match_ns"], last["trace_id"]), 1, {"h": h})
        )
        if more and last is not None
        else None
    )
    return Page(records, cursor)
