"""Span reads (search, one trace, a session's traces) and their shaping into indented trees."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import duckdb

from .errors import NotFound, QueryError
from .filters import SpanFilter, format_ns_duration
from .records import fetch_records, select_list
from .search import span_where, where_sql

Record = dict[str, Any]
_HEX = set("0123456789abcdef")


def search_spans(con: duckdb.DuckDBPyConnection, f: SpanFilter, limit: int) -> list[Record]:
    """Spans matching every condition, newest first."""
    conds, params = span_where(f)
    sql = f"SELECT {select_list('spans')} FROM spans{where_sql(conds)}"
    sql += " ORDER BY start_time DESC, span_id LIMIT ?"
    return fetch_records(con, sql, [*params, f.limit or limit])


def session_spans(con: duckdb.DuckDBPyConnection, session_id: str, f: SpanFilter) -> list[Record]:
    """All spans of the session's traces in which at least one span matches (Jaeger semantics)."""
    conds, params = span_where(SpanFilter(**{**f.__dict__, "session": session_id, "limit": None}))
    sql = (
        f"SELECT {select_list('spans', 's')} FROM spans s WHERE s.session_id = ?"
        f" AND s.trace_id IN (SELECT trace_id FROM spans{where_sql(conds)})"
        " ORDER BY s.start_time, s.span_id"
    )
    return fetch_records(con, sql, [session_id, *params])


def check_trace_id(trace_id: str) -> str:
    tid = trace_id.strip().lower()
    if len(tid) != 32 or not set(tid) <= _HEX:
        raise QueryError(f"invalid trace id {trace_id!r}: expected 32 hex digits")
    return tid


def get_trace(con: duckdb.DuckDBPyConnection, trace_id: str) -> list[Record]:
    tid = check_trace_id(trace_id)
    sql = f"SELECT {select_list('spans')} FROM spans WHERE trace_id = ?"
    rows = fetch_records(con, sql + " ORDER BY start_time, span_id", [tid])
    if not rows:
        raise NotFound(f"no trace {tid}")
    return rows


def span_trees(spans: list[Record]) -> list[tuple[str, list[tuple[int, Record]]]]:
    """Group spans by trace (in order of first start) and order each as (depth, span), depth-first.

    A span whose parent is not among ``spans`` is a root; children follow their start time.
    """
    by_trace: dict[str, list[Record]] = defaultdict(list)
    for span in spans:
        by_trace[span["trace_id"]].append(span)
    trees = []
    for trace_id, members in by_trace.items():
        ids = {s["span_id"] for s in members}
        children: dict[str | None, list[Record]] = defaultdict(list)
        for s in members:
            parent = s.get("parent_span_id")
            children[parent if parent in ids else None].append(s)
        for kids in children.values():
            kids.sort(key=lambda s: (s["start_time"] or "", s["span_id"]))
        ordered: list[tuple[int, Record]] = []
        stack = [(0, s) for s in reversed(children[None])]
        while stack:
            depth, span = stack.pop()
            ordered.append((depth, span))
            stack.extend((depth + 1, c) for c in reversed(children.get(span["span_id"], [])))
        trees.append((trace_id, ordered))
    trees.sort(key=lambda t: t[1][0][1]["start_time"] or "")
    return trees


def render_trees(spans: list[Record], show_attrs: bool = False) -> list[str]:
    """Indented span trees: name, start, duration (human unit), status[, sorted k=v]."""
    lines: list[str] = []
    for trace_id, ordered in span_trees(spans):
        root = ordered[0][1]
        where = " ".join(
            f"{k}={root[c]}" for k, c in (("room", "room"), ("session", "session_id")) if root[c]
        )
        lines.append(
            f"trace {trace_id}  {len(ordered)} spans  {root['start_time']}  {where}".rstrip()
        )
        width = max(2 * d + len(s["name"] or "") for d, s in ordered) + 2
        for depth, s in ordered:
            label = "  " * depth + (s["name"] or "")
            start = (s["start_time"] or "")[11:23]
            status = s["status_code"] or ""
            if s.get("status_message"):
                status += f" ({s['status_message']})"
            line = (
                f"  {label:<{width}}{start}  {format_ns_duration(s['duration_ns']):>8}"
                f"  {s['service_name'] or '':<12}  {status}"
            )
            if show_attrs and s.get("attributes"):
                line += "  " + " ".join(f"{k}={v}" for k, v in sorted(s["attributes"].items()))
            lines.append(line.rstrip())
        lines.append("")
    return lines
