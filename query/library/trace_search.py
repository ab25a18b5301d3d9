"""Trace search: the newest traces holding a span that matches a filter (``--attrs`` or TraceQL),
with all their spans. What Tempo's ``/api/search`` and Jaeger's ``/api/traces`` answer.

The matching spans are found with the span search's conditions (search.span_where) over the
newest 10 seconds, minute, hour, day, then all of time, each window from the newest span on
(traces.SEARCH_WINDOWS_NS; :func:`query.library.span_search.search_spans` counts disjoint
windows instead); the chosen traces' spans are then read within their time range and rooms
from ``trace_index`` (as :func:`query.library.traces.get_trace`), so a trace costs a few row
groups, not a scan.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import suppress
from dataclasses import replace
from typing import Any

import duckdb

from collector.store.reads import SPAN_ROWS, trace_ids_where

from .errors import NotFound
from .filters import SpanFilter
from .records import fetch_records, parse_ts, span_rows_sql
from .search import attribute_key_maps, filter_keys, span_where, where_sql
from .traces import SEARCH_WINDOWS_NS, get_trace, newest_start

Record = dict[str, Any]


# Trace ids newest first; each one's matching spans (span_id, start ns, duration ns, name,
# service; newest first), the first and last start of those, and their rooms.
Found = tuple[
    list[str], dict[str, list[dict]], dict[str, tuple[int, int]], dict[str, list[str | None]]
]
# How far from its matching spans a search looks for the rest of a trace (its root, its
# extent); a trace whose root lies further away is read whole (trace_spans).
NEAR_NS = 3_600 * 10**9


def find_traces(
    con: duckdb.DuckDBPyConnection,
    f: SpanFilter,
    limit: int,
    after: tuple[int, str] | None = None,
    received_by: int | None = None,
) -> Found:
    """The ids of the newest ``limit`` traces with a matching span (newest match first), the
    matching spans' ids of each (newest first) and the first and last start of those (ns);
    ``after``: only the traces after this (newest match start ns, trace id) in that order;
    ``received_by`` (epoch ns): only spans received by then match (a listing's as-of point)."""
    having, hparams = "", []
    if after is not None:
        having = (
            " HAVING max(start_time) < make_timestamp_ns(?)"
            " OR (max(start_time) = make_timestamp_ns(?) AND trace_id > ?)"
        )
        hparams = [after[0], after[0], after[1]]
    maps = attribute_key_maps(con, filter_keys(f))
    conds, params = span_where(replace(f, limit=None), key_maps=maps)
    if received_by is not None:
        conds, params = [*conds, "received_at <= make_timestamp_ns(?)"], [*params, received_by]
    newest = newest_start(con)
    windows: list[list[str]] = []
    wparams: list[list[Any]] = []
    if newest is not None:
        if f.until is not None:
            newest = min(newest, f.until)
        since = f.since
        for width in SEARCH_WINDOWS_NS:
            if since is not None and newest - width <= since:
                break
            windows.append([*conds, "start_time >= make_timestamp_ns(?)"])
            wparams.append([*params, newest - width])
    windows.append(conds)
    wparams.append(params)
    for i, (window, values) in enumerate(zip(windows, wparams, strict=True)):
        rows = con.execute(
            "SELECT trace_id, list({'span_id': span_id, 'start_ns': epoch_ns(start_time),"
            " 'duration_ns': duration_ns, 'name': name, 'service_name': service_name}"
            " ORDER BY start_time DESC, span_id),"
            " epoch_ns(min(start_time)), epoch_ns(max(start_time)), list(DISTINCT room)"
            f" FROM {SPAN_ROWS}{where_sql(window)} GROUP BY trace_id{having}"
            " ORDER BY max(start_time) DESC, trace_id LIMIT ?",
            [*values, *hparams, limit],
        ).fetchall()
        if len(rows) >= limit or i == len(windows) - 1:
            return (
                [r[0] for r in rows],
                {r[0]: r[1] for r in rows},
                {r[0]: (r[2], r[3]) for r in rows if r[2] is not None},
                {r[0]: r[4] for r in rows},
            )
    raise AssertionError("the last window is all of time")


def _extents(
    con: duckdb.DuckDBPyConnection, around: dict[str, tuple[int, int]]
) -> list[tuple[int, int, str | None]]:
    """trace_index rows (first start, last start, room) of the traces, each looked up only
    where it can be: its extent holds its matching spans' starts (zone maps skip the rest of
    the index; a lookup of one key without them reads all of it, ~10 ms at 1 M traces)."""
    parts, params = [], []
    for tid, (lo, hi) in around.items():
        parts.append(
            "SELECT epoch_ns(first_start), epoch_ns(last_start), room FROM trace_index"
            " WHERE trace_key = ?::UBIGINT AND last_start >= make_timestamp_ns(?)"
            " AND first_start <= make_timestamp_ns(?)"
        )
        params += [int(tid[:16], 16), lo - NEAR_NS, hi + NEAR_NS]
    return con.execute(" UNION ALL ".join(parts), params).fetchall() if parts else []


def trace_spans(
    con: duckdb.DuckDBPyConnection,
    trace_ids: list[str],
    around: dict[str, tuple[int, int]] | None = None,
) -> dict[str, list[Record]]:
    """All spans of each trace (start order), read within the traces' extent in trace_index;
    ``around``: a start time range of each trace's spans, to find its extent quickly."""
    if not trace_ids:
        return {}
    everywhere = (NEAR_NS, 2**63 - 1 - NEAR_NS)
    around = {t: (around or {}).get(t, everywhere) for t in trace_ids}
    extents = _extents(con, around)
    cond, params = trace_ids_where("", list(trace_ids))
    where = f" WHERE {cond}"
    rows: list[Record] = []
    if extents and all(first is not None for first, _, _ in extents):
        window = where + " AND start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)"
        wparams = [*params, min(e[0] for e in extents), max(e[1] for e in extents)]
        rooms = sorted({room for _, _, room in extents if room is not None})
        if all(room is not None for _, _, room in extents):
            window += f" AND room IN ({', '.join('?' * len(rooms))})"
            wparams += rooms
        rows = fetch_records(con, span_rows_sql(window, "start_time, span_id"), wparams)
    by_trace: dict[str, list[Record]] = defaultdict(list)
    for r in rows:
        by_trace[r["trace_id"]].append(r)
    for tid in trace_ids:  # not found near its matches, or its root is not: the whole trace
        if not any(not s["parent_span_id"] for s in by_trace.get(tid, [])):
            with suppress(NotFound):
                by_trace[tid] = get_trace(con, tid)
    return dict(by_trace)


def root_of(spans: list[Record]) -> Record:
    """The trace's root: a span without a parent among them (the earliest such), else the first."""
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if s.get("parent_span_id") not in ids]
    return (roots or spans)[0]


def _near(
    con: duckdb.DuckDBPyConnection,
    ids: list[str],
    around: dict[str, tuple[int, int]],
    rooms: dict[str, list[str | None]],
) -> dict[str, list[Record]]:
    """The traces' spans within NEAR_NS of their matches, in their matches' rooms: id, parent,
    name, service, start, duration (no attributes: enough for a root and an extent)."""
    spread = [around[t] for t in ids if t in around]
    if not spread:
        return {}
    where, params = trace_ids_where("", ids)
    where += " AND start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)"
    params.append(min(lo for lo, _ in spread) - NEAR_NS)
    params.append(max(hi for _, hi in spread) + NEAR_NS)
    in_rooms = sorted({r for t in ids for r in rooms.get(t, [None]) if r is not None})
    if in_rooms and all(None not in rooms.get(t, [None]) for t in ids):
        where += f" AND room IN ({', '.join('?' * len(in_rooms))})"
        params += in_rooms
    rows = con.execute(
        "SELECT trace_id, span_id, parent_span_id, name, service_name, epoch_ns(start_time),"
        f" duration_ns FROM {SPAN_ROWS} WHERE {where}",
        params,
    ).fetchall()
    out: dict[str, list[Record]] = defaultdict(list)
    for tid, sid, parent, name, service, start, duration in rows:
        out[tid].append(
            {"span_id": sid, "parent_span_id": parent, "name": name, "service_name": service,
             "start_ns": start, "duration_ns": duration}
        )  # fmt: skip
    return out


def search_traces(
    con: duckdb.DuckDBPyConnection,
    f: SpanFilter,
    limit: int,
    per_trace: int,
    after: tuple[int, str] | None = None,
    received_by: int | None = None,
) -> list[Record]:
    """The newest ``limit`` traces with a matching span: trace id, root service and name,
    start (epoch ns), duration (ns), up to ``per_trace`` matching spans (span_id, start_ns,
    duration_ns, name, service_name) and how many matched.

    Root and extent come from the spans near the matches (:func:`_near`); a trace whose root
    is not among them is read whole, through trace_index. ``after``, ``received_by``: as
    :func:`find_traces`."""
    ids, matched, around, rooms = find_traces(con, f, limit, after, received_by)
    near = _near(con, ids, around, rooms)
    rootless = [t for t in ids if not any(not s["parent_span_id"] for s in near.get(t, []))]
    for tid, spans in trace_spans(con, rootless, around).items():
        near[tid] = [
            {**s, "start_ns": parse_ts(s["start_time"]) if s["start_time"] else None} for s in spans
        ]
    out = []
    for tid in ids:
        members = [s for s in near.get(tid, []) if s["start_ns"] is not None]
        if not members:
            continue
        root = root_of(sorted(members, key=lambda s: (s["start_ns"], s["span_id"])))
        first = min(s["start_ns"] for s in members)
        last = max(s["start_ns"] + (s["duration_ns"] or 0) for s in members)
        out.append(
            {
                "trace_id": tid,
                "root_service": root["service_name"],
                "root_name": root["name"],
                "start_ns": first,
                "duration_ns": last - first,
                "spans": matched[tid][:per_trace],
                "matched": len(matched[tid]),
                "last_match_ns": around[tid][1] if tid in around else None,
            }
        )
    return out


def find_full_traces(
    con: duckdb.DuckDBPyConnection, f: SpanFilter, limit: int
) -> list[list[Record]]:
    """The newest ``limit`` traces with a matching span, each with all its spans (Jaeger)."""
    ids, _, around, _ = find_traces(con, f, limit)
    spans = trace_spans(con, ids, around)
    return [spans[t] for t in ids if t in spans]
