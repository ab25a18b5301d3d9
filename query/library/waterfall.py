"""A session's (or a trace's) spans in the compact, columnar shape the console's waterfall draws
from.

Only what the waterfall needs (ids, parent, name, service, status, start offset, duration) as
rows of plain values, repeated text sent once, so 5,000 spans are one small read and one small
JSON body; a span's
attributes, events and links are fetched per trace when it is opened (``/api/v1/traces/{id}``).
"""

from __future__ import annotations

from typing import Any

import duckdb

from collector.store.reads import trace_ids_where

from .errors import NotFound
from .filters import SpanFilter
from .records import format_ts
from .search import attribute_key_maps, filter_keys, span_where, where_sql
from .traces import check_trace_id, trace_window

COLUMNS = [
    "trace_id", "span_id", "parent_span_id", "name", "service_name", "kind", "status_code",
    "start_ns", "duration_ns",
]  # fmt: skip
CODED = {"trace_id", "name", "service_name", "kind", "status_code"}


def session_waterfall(
    con: duckdb.DuckDBPyConnection, session_id: str, f: SpanFilter
) -> dict[str, Any]:
    """Spans of the session's traces in which one span matches ``f`` (as ``.../spans``), in
    start order; ``start_ns`` is nanoseconds after ``base_time`` (the earliest start)."""
    maps = attribute_key_maps(con, filter_keys(f))
    session_filter = SpanFilter(**{**f.__dict__, "session": session_id, "limit": None})
    conds, params = span_where(session_filter, key_maps=maps)
    sql = f"""
        WITH s AS (
            SELECT trace_id, span_id, parent_span_id, name, service_name, kind, status_code,
                   epoch_ns(start_time) AS start, duration_ns
            FROM span_rows WHERE session_id = ?
              AND trace_id IN (SELECT trace_id FROM span_rows{where_sql(conds)})
        )
        SELECT trace_id, span_id, parent_span_id, name, service_name, kind, status_code,
               start - min(start) OVER () AS start_ns, duration_ns, min(start) OVER () AS base
        FROM s ORDER BY start, span_id
    """
    return {"session_id": session_id, **_compact(con.execute(sql, [session_id, *params]))}


def trace_waterfall(con: duckdb.DuckDBPyConnection, trace_id: str) -> dict[str, Any]:
    """One trace's spans in the same compact shape, read within its extent (trace_index, as
    :func:`query.library.traces.get_trace`), with the session and room of its root."""
    tid = check_trace_id(trace_id)
    where, params = trace_ids_where("", [tid])
    window, wparams = trace_window(con, tid)
    where, params = where + window, [*params, *wparams]
    sql = f"""
        SELECT trace_id, span_id, parent_span_id, name, service_name, kind, status_code,
               epoch_ns(start_time) - min(epoch_ns(start_time)) OVER () AS start_ns, duration_ns,
               min(epoch_ns(start_time)) OVER () AS base, session_id, room
        FROM span_rows WHERE {where} ORDER BY start_time, span_id
    """
    answer = _compact(con.execute(sql, params), keep=("session_id", "room"))
    if not answer["rows"]:
        raise NotFound(f"no trace {tid}")
    return {"trace_id": tid, **answer}


def _compact(cur: duckdb.DuckDBPyConnection, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The rows of ``cur`` (COLUMNS and ``base``) as the compact answer; ``keep``: columns
    whose value in the first row without a parent (the root) is returned too."""
    at = {d[0]: i for i, d in enumerate(cur.description)}  # the rows' columns, by name
    rows = cur.fetchall()
    base = rows[0][at["base"]] if rows else None
    root = next((r for r in rows if r[at["parent_span_id"]] is None), rows[0] if rows else None)
    kept = {k: root[at[k]] if root is not None else None for k in keep}
    columns = [at[c] for c in COLUMNS]
    # Repeated text (trace ids, names, services, kinds, statuses) travels once, in ``strings``;
    # those columns hold indexes into it (null stays null).
    strings: dict[str, int] = {}

    def ref(text: str | None) -> int | None:
        return None if text is None else strings.setdefault(text, len(strings))

    coded = [i for i, c in enumerate(COLUMNS) if c in CODED]
    out = []
    for r in rows:
        row = [r[i] for i in columns]
        for i in coded:
            row[i] = ref(row[i])
        out.append(row)
    return {
        **kept,
        "base_time": format_ts(base),
        "columns": COLUMNS,
        "coded": [COLUMNS[i] for i in coded],
        "strings": list(strings),
        "rows": out,
    }
