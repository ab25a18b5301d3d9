"""Trace search: the newest traces holding a span that matches a filter (``--attrs`` or TraceQL),
with all their spans. What Tempo's ``/api/search`` and Jaeger's ``/api/traces`` answer.

The matching spans are found with the span search's conditions (search.span_where) over the
newest hour, then day, then all of time, as :func:`query.library.traces.search_spans` does;
the chosen traces' spans are then read within their time range and rooms from ``trace_index``
(as :func:`query.library.traces.get_trace`), so a trace costs a few row groups, not a scan.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import duckdb

from collector.store.reads import SPAN_ROWS

from .filters import SpanFilter
from .records import fetch_records, parse_ts, span_rows_sql
from .search import attribute_key_maps, filter_keys, span_where, where_sql
from .traces import SEARCH_WINDOWS_NS, newest_start

Record = dict[str, Any]


def find_traces(
    con: duckdb.DuckDBPyConnection, f: SpanFilter, limit: int
) -> tuple[list[str], dict[str, list[str]]]:
    """The ids of the newest ``limit`` traces with a matching span (newest match first), and
    the matching spans' ids of each (newest first)."""
    conds, params = span_where(
        replace(f, limit=None), key_maps=attribute_key_maps(con, filter_keys(f))
    )
    newest = newest_start(con)
    windows: list[list[str]] = []
    wparams: list[list[Any]] = []
    if newest is not None:
        if f.until is not None:
            newest = min(newest, int(f.until.timestamp()) * 10**9)
        since = int(f.since.timestamp()) * 10**9 if f.since is not None else None
        for width in SEARCH_WINDOWS_NS:
            if since is not None and newest - width <= since:
                break
            windows.append([*conds, "start_time >= make_timestamp_ns(?)"])
            wparams.append([*params, newest - width])
    windows.append(conds)
    wparams.append(params)
    for i, (window, values) in enumerate(zip(windows, wparams, strict=True)):
        rows = con.execute(
            "SELECT trace_id, list(span_id ORDER BY start_time DESC, span_id)"
            f" FROM {SPAN_ROWS}{where_sql(window)} GROUP BY trace_id"
            " ORDER BY max(start_time) DESC, trace_id LIMIT ?",
            [*values, limit],
        ).fetchall()
        if len(rows) >= limit or i == len(windows) - 1:
            return [r[0] for r in rows], {r[0]: r[1] for r in rows}
    raise AssertionError("the last window is all of time")


def trace_spans(con: duckdb.DuckDBPyConnection, trace_ids: list[str]) -> dict[str, list[Record]]:
    """All spans of each trace (start order), read within the traces' extent in trace_index."""
    if not trace_ids:
        return {}
    marks = ", ".join("?" * len(trace_ids))
    first, last, rooms, null_room = con.execute(
        "SELECT epoch_ns(min(first_start)), epoch_ns(max(last_start)),"
        " list(DISTINCT room) FILTER (WHERE room IS NOT NULL), bool_or(room IS NULL)"
        f" FROM trace_index WHERE trace_key IN ({marks})",
        [int(t[:16], 16) for t in trace_ids],
    ).fetchone()
    where, params = f" WHERE trace_id IN ({marks})", list(trace_ids)
    rows: list[Record] = []
    if first is not None:
        window = where + " AND start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)"
        wparams = [*params, first, last]
        if rooms and not null_room:
            window += f" AND room IN ({', '.join('?' * len(rooms))})"
            wparams += rooms
        rows = fetch_records(con, span_rows_sql(window, "start_time, span_id"), wparams)
    found = {r["trace_id"] for r in rows}
    if len(found) < len(set(trace_ids)):  # spans without a start, or no index: every row
        rows = fetch_records(con, span_rows_sql(where, "start_time, span_id"), params)
    by_trace: dict[str, list[Record]] = defaultdict(list)
    for r in rows:
        by_trace[r["trace_id"]].append(r)
    return dict(by_trace)


def root_of(spans: list[Record]) -> Record:
    """The trace's root: a span without a parent among them (the earliest such), else the first."""
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if s.get("parent_span_id") not in ids]
    return (roots or spans)[0]


def extent(spans: list[Record]) -> tuple[int, int]:
    """(first start, last end) of the spans in epoch ns."""
    timed = [(parse_ts(s["start_time"]), s["duration_ns"] or 0) for s in spans if s["start_time"]]
    if not timed:
        return 0, 0
    return min(t for t, _ in timed), max(t + d for t, d in timed)


def search_traces(
    con: duckdb.DuckDBPyConnection, f: SpanFilter, limit: int, per_trace: int
) -> list[Record]:
    """The newest ``limit`` traces with a matching span: trace id, root service and name,
    start (epoch ns), duration (ns), up to ``per_trace`` matching spans and how many matched."""
    ids, matched = find_traces(con, f, limit)
    spans = trace_spans(con, ids)
    out = []
    for tid in ids:
        members = spans.get(tid, [])
        if not members:
            continue
        by_id = {s["span_id"]: s for s in members}
        root = root_of(members)
        first, last = extent(members)
        hits = [by_id[s] for s in matched[tid] if s in by_id]
        out.append(
            {
                "trace_id": tid,
                "root_service": root["service_name"],
                "root_name": root["name"],
                "start_ns": first,
                "duration_ns": last - first,
                "spans": hits[:per_trace],
                "matched": len(matched[tid]),
            }
        )
    return out


def find_full_traces(
    con: duckdb.DuckDBPyConnection, f: SpanFilter, limit: int
) -> list[list[Record]]:
    """The newest ``limit`` traces with a matching span, each with all its spans (Jaeger)."""
    ids, _ = find_traces(con, f, limit)
    spans = trace_spans(con, ids)
    return [spans[t] for t in ids if t in spans]
