"""Filters → SQL WHERE clauses with bound parameters (never formatted user values).

Every builder returns ``(sql_fragment, params)``; column and table names come from this module,
user text only ever travels as a ``?`` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from collector.store.reads import (
    ATTRIBUTE_KEYS,
    KEYSETS,
    RESOURCES,
    trace_ids_where,
    value_at,
    value_of_key,
)

from . import traceql, traceql_sql
from .filters import SPAN_FIELDS, LogFilter, MetricFilter, SessionFilter, SpanFilter

Where = tuple[list[str], list[Any]]


@dataclass(frozen=True)
class KeyPlaces:
    """Where an attribute key occurs: in which span keysets (id, 1-based position), and whether
    in any resource. ``keysets`` None: not known (look the position up per row)."""

    keysets: tuple[tuple[int, int], ...] | None = None
    resource: bool = True


UNKNOWN = KeyPlaces()
KeyMaps = dict[str, KeyPlaces] | None
CASE_LIMIT = 64  # more keysets hold the key: look its position up per row instead


def attribute_key_maps(con: duckdb.DuckDBPyConnection, keys: list[str]) -> KeyMaps:
    """Where each of ``keys`` occurs (attribute_keysets and span_attribute_keys): a search
    then reads a span's value straight from its position, and skips lookups that cannot match
    (decoding attribute values is what a scan spends most on)."""
    if not keys:
        return {}
    keysets: dict[str, list[tuple[int, int]]] = {k: [] for k in keys}
    in_resources: set[str] = set()
    # One statement for both tables (each statement on a lake plans against its catalog).
    rows = con.execute(
        "SELECT q.key, ks.keyset_id, list_position(ks.keys, q.key)"
        " FROM (SELECT unnest($1::VARCHAR[]) AS key) q"
        f" JOIN {KEYSETS} ks ON list_contains(ks.keys, q.key)"
        f" UNION ALL SELECT key, NULL, NULL FROM {ATTRIBUTE_KEYS}"
        " WHERE map = 'resource' AND list_contains($1, key) ORDER BY 2 NULLS LAST",
        [keys],
    ).fetchall()
    for key, keyset, position in rows:
        if keyset is None:
            in_resources.add(key)
        else:
            keysets[key].append((keyset, position))
    return {k: KeyPlaces(tuple(keysets[k]), k in in_resources) for k in keys}


_IN_RESOURCES = "{p}resource_id IN (SELECT resource_id FROM " + RESOURCES + " WHERE {cond})"
_KEYS_OF_ROW = "(SELECT keys FROM " + KEYSETS + " WHERE keyset_id = {p}attribute_keyset)"


def _span_value(key: str, p: str, places: KeyPlaces) -> tuple[str, list[Any]] | None:
    """SQL for a span's value of attribute ``key`` (NULL when it has none); None: no span has
    the key. Values sit at the key's position in the span's keyset (span_archive.py)."""
    if places.keysets is None or len(places.keysets) > CASE_LIMIT:
        return value_of_key(p, _KEYS_OF_ROW.format(p=p)), [key]
    if not places.keysets:
        return None
    whens = " ".join(
        f"WHEN {int(ks)}::UBIGINT THEN {value_at(p, int(pos))}" for ks, pos in places.keysets
    )
    return f"(CASE {p}attribute_keyset {whens} END)", []


def _equals(expr: str, params: list[Any], value: str) -> tuple[str, list[Any]]:
    """``expr`` (an attribute value, NULL when absent) is ``value``, or is an array holding it:
    SPEC 4 stores arrays as JSON text (``["a","b"]``), so ``tags=a`` matches. The CASE tries
    equality first and parses only values that look like a JSON array (its branches run on the
    rows the earlier ones left; text that is not JSON never reaches json_extract_string). A
    search no value matches reads every row: this costs it ~20 % more CPU than equality alone
    (``starts_with`` instead of ``LIKE`` would cost 50 %)."""
    sql = (
        f"(CASE WHEN {expr} = ? THEN true WHEN {expr} NOT LIKE '[%' THEN false"
        f" WHEN json_valid({expr})"
        f" THEN list_contains(json_extract_string({expr}, '$[*]'), ?) ELSE false END)"
    )
    return sql, [*params, value, *params, *params, *params, value]


def span_value_sql(key: str, p: str, places: KeyPlaces) -> tuple[str, list[Any]] | None:
    """SQL for a span_rows row's value of span attribute ``key`` (None: no span has it)."""
    return _span_value(key, p, places)


def span_value_or_null(key: str, alias: str, places: KeyPlaces) -> tuple[str, list[Any]]:
    """SQL for a span's own value of attribute ``key`` (NULL where it has none), read at the
    key's keyset positions (``places`` from :func:`attribute_key_maps`)."""
    found = _span_value(key, f"{alias}." if alias else "", places)
    return found if found is not None else ("NULL::VARCHAR", [])


def _lookup(key: str, value: str | None, p: str, places: KeyPlaces) -> tuple[str, list[Any]]:
    """``coalesce(attributes[key], resource_attributes[key])`` matches ``value`` (see _equals;
    ``IS NOT NULL`` when value is None) on span_rows; "false" when no span or resource has
    the key."""
    span = _span_value(key, p, places)
    if value is None:
        resource = _IN_RESOURCES.format(p=p, cond="attributes[?] IS NOT NULL")
        if span is not None and places.resource:
            return f"({span[0]} IS NOT NULL OR {resource})", [*span[1], key]
        if span is not None:
            return f"{span[0]} IS NOT NULL", span[1]
        return (resource, [key]) if places.resource else ("false", [])
    in_resource, rp = _equals("attributes[?]", [key], value)
    resource = _IN_RESOURCES.format(p=p, cond=in_resource)
    if span is not None:
        sql, sp = span
        own, op = _equals(sql, sp, value)
        if places.resource:
            return f"(CASE WHEN {sql} IS NOT NULL THEN {own} ELSE {resource} END)", [*sp, *op, *rp]
        return own, op
    if places.resource:
        return resource, rp
    return "false", []


def _attr_condition(
    key: str, value: str, alias: str, places: KeyPlaces = UNKNOWN
) -> tuple[str, list[Any]]:
    """SPEC 5: span attributes, then resource attributes; ``status`` and span-field fallbacks."""
    p = f"{alias}." if alias else ""
    looked_up, lp = _lookup(key, value, p, places)
    absent = looked_up == "false"
    if key == "status":
        own = f"{p}status_code = upper(?)"
        return (own, [value]) if absent else (f"({own} OR {looked_up})", [value, *lp])
    if key in SPAN_FIELDS:
        column = f"{p}{SPAN_FIELDS[key]}"
        own = f"upper({column}) = upper(?)" if key == "kind" else f"{column} = ?"
        if absent:
            return own, [value]
        present, pp = _lookup(key, None, p, places)
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
        cond, values = trace_ids_where(p, [f.trace_id.lower()])
        add(cond, *values)
    if f.min_duration is not None:
        add(f"{p}duration_ns >= ?", f.min_duration)
    if f.max_duration is not None:
        add(f"{p}duration_ns <= ?", f.max_duration)
    if f.since is not None:
        add(f"{p}start_time >= make_timestamp_ns(?)", f.since)
    if f.until is not None:
        add(f"{p}start_time <= make_timestamp_ns(?)", f.until)
    for key, value in f.attrs:
        places = UNKNOWN if key_maps is None else key_maps.get(key, UNKNOWN)
        sql, values = _attr_condition(key, value, alias, places)
        add(sql, *values)
    if f.q is not None:

        def span_value(key: str) -> tuple[str, list[Any]] | None:
            return _span_value(key, p, UNKNOWN if key_maps is None else key_maps.get(key, UNKNOWN))

        for node in traceql_sql.conjuncts(traceql.parse(f.q)):
            sql, values = traceql_sql.condition(node, p, span_value)
            add(sql, *values)
    return conds, params


def filter_keys(f: SpanFilter) -> list[str]:
    """The attribute keys a span filter looks up (``--attrs`` and TraceQL): attribute_key_maps'."""
    keys = [k for k, _ in f.attrs]
    if f.q is not None:
        keys += traceql_sql.attribute_keys(traceql.parse(f.q))
    return list(dict.fromkeys(keys))


def session_where(f: SessionFilter) -> Where:
    conds: list[str] = []
    params: list[Any] = []
    if f.room is not None:
        conds.append("room = ?")
        params.append(f.room)
    if f.project is not None:
        conds.append("project = ?")
        params.append(f.project)
    if f.active is True:
        conds.append("ended_at IS NULL")
    elif f.active is False:
        conds.append("ended_at IS NOT NULL")
    if f.since is not None:
        conds.append("last_seen_at >= make_timestamp_ns(?)")
        params.append(f.since)
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
    for column in ("trace_id", "span_id"):
        if getattr(f, column) is not None:
            conds.append(f"{column} = ?")
            params.append(getattr(f, column))
    return conds, params


def metric_where(f: MetricFilter) -> Where:
    if f.name is None:
        return [], []
    return ["name = ?"], [f.name]


def where_sql(conds: list[str]) -> str:
    return (" WHERE " + " AND ".join(conds)) if conds else ""
