"""Filters → SQL WHERE clauses with bound parameters (never formatted user values).

Every builder returns ``(sql_fragment, params)``; column and table names come from this module,
user text only ever travels as a ``?`` parameter.
"""

from __future__ import annotations

from typing import Any

import duckdb

from .filters import SPAN_FIELDS, LogFilter, MetricFilter, SessionFilter, SpanFilter

Where = tuple[list[str], list[Any]]


# Which maps a key occurs in ("span", "resource"); None: not known (look in both).
KeyMaps = dict[str, set[str]] | None


def attribute_key_maps(con: duckdb.DuckDBPyConnection, keys: list[str]) -> KeyMaps:
    """The maps each of ``keys`` occurs in, from span_attribute_keys (schema version 2)."""
    if not keys:
        return {}
    found: dict[str, set[str]] = {k: set() for k in keys}
    try:
        rows = con.execute(
            "SELECT key, map FROM span_attribute_keys WHERE list_contains(?, key)", [keys]
        ).fetchall()
    except duckdb.CatalogException:  # a version-1 file opened read-only
        return None
    for key, map_name in rows:
        found[key].add(map_name)
    return found


_IN_RESOURCES = "{p}resource_id IN (SELECT resource_id FROM resources WHERE {cond})"


def _lookup(key: str, value: str | None, p: str, maps: set[str]) -> tuple[str, list[Any]]:
    """``coalesce(attributes[key], resource_attributes[key]) = value`` (``IS NOT NULL`` when
    value is None) on span_data, whose resource attributes sit in the resources table."""
    test = "= ?" if value is not None else "IS NOT NULL"
    tail = [value] if value is not None else []
    span = f"{p}attributes[?] {test}"
    resource = _IN_RESOURCES.format(p=p, cond=f"attributes[?] {test}")
    if maps == {"span", "resource"}:
        if value is None:
            return f"({span} OR {resource})", [key, key]
        return (
            f"(CASE WHEN {p}attributes[?] IS NOT NULL THEN {span} ELSE {resource} END)",
            [key, key, *tail, key, *tail],
        )
    if "span" in maps:
        return span, [key, *tail]
    if "resource" in maps:
        return resource, [key, *tail]
    return "false", []


def _attr_condition(
    key: str, value: str, alias: str, maps: set[str] | None = None
) -> tuple[str, list[Any]]:
    """SPEC 5: span attributes, then resource attributes; ``status`` and span-field fallbacks.

    ``maps`` (the maps ``key`` occurs in at all) drops lookups that cannot match: decoding a
    MAP column is what a scan spends most on."""
    p = f"{alias}." if alias else ""
    if maps is None:
        maps = {"span", "resource"}
    maps = maps & {"span", "resource"}
    looked_up, lp = _lookup(key, value, p, maps)
    if key == "status":
        own = f"upper({p}status_code) = upper(?)"
        if not maps:
            return own, [value]
        return f"({own} OR {looked_up})", [value, *lp]
    if key in SPAN_FIELDS:
        column = f"{p}{SPAN_FIELDS[key]}"
        own = f"upper({column}) = upper(?)" if key == "kind" else f"{column} = ?"
        if not maps:
            return own, [value]
        present, pp = _lookup(key, None, p, maps)
        return f"(CASE WHEN {present} THEN {looked_up} ELSE {own} END)", [*pp, *lp, value]
    return looked_up, lp


def span_where(f: SpanFilter, alias: str = "", key_maps: KeyMaps = None) -> Where:
    """Conditions one span must meet (all of them); ``key_maps`` from attribute_key_maps."""
    p = f"{alias}." if alias else ""
    conds: list[str] = []
    params: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        conds.append(sql)
        params.extend(values)

    if f.room is not None:
        add(f"{p}room = ?", f.room)
    if f.session is not None:
        add(f"{p}session_id = ?", f.session)
    if f.service is not None:
        add(f"{p}service_name = ?", f.service)
    if f.name is not None:
        add(f"contains(lower({p}name), lower(?))", f.name)
    if f.trace_id is not None:
        add(f"{p}trace_id = lower(?)", f.trace_id)
    if f.min_duration is not None:
        add(f"{p}duration_ns >= ?", f.min_duration)
    if f.max_duration is not None:
        add(f"{p}duration_ns <= ?", f.max_duration)
    if f.since is not None:
        add(f"{p}start_time >= ?", f.since.replace(tzinfo=None))
    if f.until is not None:
        add(f"{p}start_time <= ?", f.until.replace(tzinfo=None))
    for key, value in f.attrs:
        maps = None if key_maps is None else key_maps.get(key)
        sql, values = _attr_condition(key, value, alias, maps)
        add(sql, *values)
    return conds, params


def session_where(f: SessionFilter) -> Where:
    conds: list[str] = []
    params: list[Any] = []
    if f.room is not None:
        conds.append("room = ?")
        params.append(f.room)
    if f.active is True:
        conds.append("ended_at IS NULL")
    elif f.active is False:
        conds.append("ended_at IS NOT NULL")
    if f.since is not None:
        conds.append("last_seen_at >= ?")
        params.append(f.since.replace(tzinfo=None))
    return conds, params


def log_where(f: LogFilter) -> Where:
    conds: list[str] = []
    params: list[Any] = []
    if f.severity is not None:
        conds.append("severity_number >= ?")
        params.append(f.severity)
    if f.grep is not None:
        conds.append("contains(lower(body), lower(?))")
        params.append(f.grep)
    if f.after is not None:
        conds.append("received_at > make_timestamp_ns(?)")
        params.append(f.after)
    return conds, params


def metric_where(f: MetricFilter) -> Where:
    if f.name is None:
        return [], []
    return ["name = ?"], [f.name]


def where_sql(conds: list[str]) -> str:
    return (" WHERE " + " AND ".join(conds)) if conds else ""
