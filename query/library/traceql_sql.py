"""The TraceQL planner: a condition tree (:mod:`query.library.traceql`) → a WHERE condition on
``span_rows`` with bound parameters, built from the same column tests and attribute lookups as
the CLI's filters (:func:`query.library.search.span_where` calls :func:`condition`).

So ``{ resource.room = "lobby" && duration > 1s && status = error }`` becomes
``room = ? AND duration_ns > ? AND status_code = ?``: what ``--room lobby --min-duration 1s``
and a status test cost. roomscope's tags ``room``, ``session`` and ``project`` (bare, or as
``resource.X`` / ``.X``) and ``service.name`` are columns; other attributes are read from the
span's keyset position (``span_value``, from search.attribute_key_maps) or its resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collector.store.reads import RESOURCES, SPAN_ROWS

from .traceql import Cond, Field, Group, Node, fields_of

SqlParams = tuple[str, list[Any]]
# key → SQL for the span's value of that attribute (NULL when absent); None: no span has it.
SpanValue = Callable[[str], SqlParams | None]

_SQL_OP = {"=": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
# Tags stored as columns (SPEC 4): as intrinsics, resource.X or .X.
TAG_COLUMNS = {"room": "room", "session": "session_id", "project": "project"}
RESOURCE_COLUMNS = {**TAG_COLUMNS, "service.name": "service_name"}
_INTRINSIC_COLUMNS = {
    **TAG_COLUMNS,
    "name": "name",
    "statusMessage": "status_message",
    "duration": "duration_ns",
    "status": "status_code",
    "kind": "kind",
}


def attribute_keys(node: Node | None) -> list[str]:
    """The span attribute keys a tree looks up (for search.attribute_key_maps)."""
    keys = []
    for f in fields_of(node):
        if f.scope == "span" or (f.scope == "any" and f.name not in RESOURCE_COLUMNS):
            keys.append(f.name)
    return list(dict.fromkeys(keys))


def condition(node: Node, p: str, span_value: SpanValue) -> SqlParams:
    """SQL for ``node`` on a span_rows row (``p``: alias and dot, or "")."""
    if isinstance(node, Group):
        parts = [condition(item, p, span_value) for item in node.items]
        joiner = " AND " if node.op == "&&" else " OR "
        return (
            "(" + joiner.join(sql for sql, _ in parts) + ")",
            [v for _, params in parts for v in params],
        )
    return _cond(node, p, span_value)


def conjuncts(node: Node | None) -> list[Node]:
    """A top-level ``a && b && c`` as its parts (each its own WHERE condition, as the CLI's)."""
    if node is None:
        return []
    if isinstance(node, Group) and node.op == "&&":
        return list(node.items)
    return [node]


def _test(expr: str, cond: Cond) -> SqlParams:
    """``expr`` (SQL text) compared as the condition says."""
    v = cond.value
    if v.type == "nil":
        return (f"{expr} IS NULL" if cond.op == "=" else f"{expr} IS NOT NULL"), []
    if cond.op == "=~":
        return f"regexp_full_match({expr}, ?)", [v.value]
    if cond.op == "!~":
        return f"NOT regexp_full_match({expr}, ?)", [v.value]
    op = _SQL_OP[cond.op]
    if v.type in ("number", "duration"):
        return f"TRY_CAST({expr} AS DOUBLE) {op} ?", [float(v.value)]
    if v.type == "bool":
        return f"lower({expr}) {op} ?", ["true" if v.value else "false"]
    return f"{expr} {op} ?", [str(v.value)]


def _column_test(column: str, cond: Cond) -> SqlParams:
    v = cond.value
    if column in ("status_code", "kind") and v.type != "nil":
        return f"{column} {_SQL_OP[cond.op]} ?", [str(v.value).upper()]
    if column.endswith("duration_ns") and v.type == "duration":
        return f"{column} {_SQL_OP[cond.op]} ?", [int(v.value)]
    return _test(column, cond)


def _resource_test(key: str, cond: Cond, p: str) -> SqlParams:
    test, params = _test("attributes[?]", cond)
    sql = f"{p}resource_id IN (SELECT resource_id FROM {RESOURCES} WHERE {test})"
    return sql, [key, *params]


def _cond(cond: Cond, p: str, span_value: SpanValue) -> SqlParams:
    f: Field = cond.field
    if f.scope == "intrinsic":
        return _intrinsic(cond, p)
    if f.scope in ("resource", "any") and f.name in RESOURCE_COLUMNS:
        return _column_test(p + RESOURCE_COLUMNS[f.name], cond)
    if f.scope == "resource":
        return _resource_absent(f.name, p) if _is_absent(cond) else _resource_test(f.name, cond, p)
    span = span_value(f.name)
    if f.scope == "span":
        if span is None:
            return ("true", []) if _is_absent(cond) else ("false", [])
        sql, sp = span
        test, tp = _test(sql, cond)
        return test, [*sp, *tp]
    # .X: the span's attribute when it has one, else its resource's.
    if _is_absent(cond):
        res, rp = _resource_absent(f.name, p)
        if span is None:
            return res, rp
        return f"({span[0]} IS NULL AND {res})", [*span[1], *rp]
    res, rp = _resource_test(f.name, cond, p)
    if span is None:
        return res, rp
    sql, sp = span
    test, tp = _test(sql, cond)
    return f"(CASE WHEN {sql} IS NOT NULL THEN {test} ELSE {res} END)", [*sp, *sp, *tp, *rp]


def _is_absent(cond: Cond) -> bool:
    return cond.value.type == "nil" and cond.op == "="


def _resource_absent(key: str, p: str) -> SqlParams:
    having = f"SELECT resource_id FROM {RESOURCES} WHERE attributes[?] IS NOT NULL"
    return f"{p}resource_id NOT IN ({having})", [key]


def _intrinsic(cond: Cond, p: str) -> SqlParams:
    name = cond.field.name
    if name in _INTRINSIC_COLUMNS:
        return _column_test(p + _INTRINSIC_COLUMNS[name], cond)
    if name in ("rootName", "rootServiceName"):
        column = "name" if name == "rootName" else "service_name"
        test, tp = _test(column, cond)
        roots = f"SELECT trace_id FROM {SPAN_ROWS} WHERE coalesce(parent_span_id, '') = ''"
        roots += f" AND {test}"
        return f"{p}trace_id IN ({roots})", tp
    assert name == "traceDuration"
    extent = "max(epoch_ns(start_time) + duration_ns) - min(epoch_ns(start_time))"
    op = _SQL_OP[cond.op]
    having = f"SELECT trace_id FROM {SPAN_ROWS} GROUP BY trace_id HAVING {extent} {op} ?"
    return f"{p}trace_id IN ({having})", [int(cond.value.value)]
