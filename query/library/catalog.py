"""What there is to search for: services, operations, attribute keys and values, and the service
graph. Tempo's tag completion and Jaeger's service/operation lists and dependencies read these.

Keys and values come from the spans of a time range (by default the newest day of data) through
``span_rows``, so a project-scoped reader (a query token) sees only its own project's names.
"""

from __future__ import annotations

from typing import Any

import duckdb

from collector.store.reads import KEYSETS, RESOURCES, SPAN_ROWS, id_number

from .search import attribute_key_maps, span_value_sql
from .traces import newest_start

DAY_NS = 86_400 * 10**9
MAX_VALUES = 1000  # tag values one answer lists
# TraceQL intrinsics (Tempo's "intrinsic" scope) and the value lists of the enumerated ones.
INTRINSICS = (
    "duration", "kind", "name", "rootName", "rootServiceName", "status", "statusMessage",
    "traceDuration",
)  # fmt: skip
KEYWORDS = {
    "status": ("error", "ok", "unset"),
    "kind": ("unspecified", "internal", "server", "client", "producer", "consumer"),
}
# roomscope's own tags, offered in the resource scope (the room, session_id, project columns).
TAG_COLUMNS = {"room": "room", "session": "session_id", "project": "project"}

Range = tuple[int, int] | None  # (start, end) epoch ns; None: the newest day


def _range(con: duckdb.DuckDBPyConnection, span: Range) -> tuple[str, list[Any]]:
    if span is not None:
        return (
            " WHERE start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)",
            list(span),
        )
    newest = newest_start(con)
    if newest is None:
        return "", []
    return " WHERE start_time >= make_timestamp_ns(?)", [newest - DAY_NS]


def services(con: duckdb.DuckDBPyConnection, span: Range = None) -> list[str]:
    where, params = _range(con, span)
    sql = f"SELECT DISTINCT service_name FROM {SPAN_ROWS}{where}"
    rows = con.execute(f"{sql}{' AND' if where else ' WHERE'} service_name IS NOT NULL", params)
    return sorted(r[0] for r in rows.fetchall())


def operations(con: duckdb.DuckDBPyConnection, service: str, span: Range = None) -> list[dict]:
    """The span names of a service, with their kinds."""
    where, params = _range(con, span)
    where = (where + " AND" if where else " WHERE") + " service_name = ?"
    rows = con.execute(
        f"SELECT DISTINCT name, kind FROM {SPAN_ROWS}{where} ORDER BY 1, 2", [*params, service]
    ).fetchall()
    return [{"name": n, "kind": k} for n, k in rows if n is not None]


def tag_names(con: duckdb.DuckDBPyConnection, span: Range = None) -> dict[str, list[str]]:
    """Attribute keys by scope (resource, span) and the intrinsics, as Tempo lists them."""
    where, params = _range(con, span)
    span_keys = con.execute(
        f"SELECT DISTINCT unnest(keys) FROM {KEYSETS} WHERE keyset_id IN"
        f" (SELECT DISTINCT attribute_keyset FROM {SPAN_ROWS}{where})",
        params,
    ).fetchall()
    resource_keys = con.execute(
        f"SELECT DISTINCT unnest(map_keys(attributes)) FROM {RESOURCES} WHERE resource_id IN"
        f" (SELECT DISTINCT resource_id FROM {SPAN_ROWS}{where})",
        params,
    ).fetchall()
    return {
        "resource": sorted({*TAG_COLUMNS, *(k for (k,) in resource_keys)}),
        "span": sorted({k for (k,) in span_keys}),
        "intrinsic": list(INTRINSICS),
    }


def tag_values(
    con: duckdb.DuckDBPyConnection, scope: str, name: str, span: Range = None
) -> list[tuple[str, str]]:
    """(type, value) pairs of a tag: ``scope`` is "resource", "span", "" (either, or an
    intrinsic). Enumerated intrinsics are Tempo's ``keyword`` type, the rest ``string``."""
    if scope == "" and name in KEYWORDS:
        return [("keyword", v) for v in KEYWORDS[name]]
    where, params = _range(con, span)
    column = None
    if scope in ("", "resource") and name in TAG_COLUMNS:
        column = TAG_COLUMNS[name]
    elif scope in ("", "resource") and name == "service.name":
        column = "service_name"
    elif scope == "" and name in ("name", "statusMessage", "rootName", "rootServiceName"):
        column = {"statusMessage": "status_message", "rootServiceName": "service_name"}.get(
            name, "name"
        )
    if column is not None:
        sql = f"SELECT DISTINCT {column} FROM {SPAN_ROWS}{where}"
    elif scope == "" and name in INTRINSICS:
        return []  # durations: nothing to list
    else:
        sql, params = _attribute_values(con, scope, name, where, params)
    rows = con.execute(f"SELECT v FROM ({sql}) t(v) WHERE v IS NOT NULL ORDER BY v LIMIT ?",
                       [*params, MAX_VALUES]).fetchall()  # fmt: skip
    return [("string", str(v)) for (v,) in rows]


def _attribute_values(
    con: duckdb.DuckDBPyConnection, scope: str, name: str, where: str, params: list[Any]
) -> tuple[str, list[Any]]:
    parts: list[str] = []
    values: list[Any] = []
    if scope in ("", "span"):
        found = span_value_sql(name, "", attribute_key_maps(con, [name])[name])
        if found is not None:
            parts.append(f"SELECT DISTINCT {found[0]} FROM {SPAN_ROWS}{where}")
            values += [*found[1], *params]
    if scope in ("", "resource"):
        parts.append(
            f"SELECT DISTINCT attributes[?] FROM {RESOURCES} WHERE resource_id IN"
            f" (SELECT DISTINCT resource_id FROM {SPAN_ROWS}{where})"
        )
        values += [name, *params]
    return " UNION ".join(parts), values


def dependencies(con: duckdb.DuckDBPyConnection, start_ns: int, end_ns: int) -> list[dict]:
    """Calls between services: (parent service, child service, count) of the parent/child span
    pairs whose child started in [start, end] and whose services differ. Joined on the ids
    as numbers (span_rows' ``trace_num``, ``span_num``): the hex text of every archived span
    of the hour would be formatted otherwise."""
    rows = con.execute(
        f"""
        WITH c AS (
            SELECT trace_num, {id_number("parent_span_id")} AS parent_num, service_name
            FROM {SPAN_ROWS}
            WHERE start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)
              AND parent_span_id IS NOT NULL
        ), p AS (
            SELECT trace_num, span_num, service_name FROM {SPAN_ROWS}
            WHERE start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)
        )
        SELECT p.service_name, c.service_name, count(*) FROM c
        JOIN p ON p.trace_num = c.trace_num AND p.span_num = c.parent_num
        WHERE p.service_name IS DISTINCT FROM c.service_name
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        [start_ns, end_ns, start_ns - DAY_NS, end_ns],
    ).fetchall()
    return [{"parent": p, "child": c, "callCount": n} for p, c, n in rows]
