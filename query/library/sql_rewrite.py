"""Ad-hoc SQL at columnar speed: attribute lookups on ``spans`` read the stored columns.

SPEC 4's ``spans.attributes`` is a MAP, but the store keeps a span's attributes as the id of
its list of keys plus the values by position (collector.store.span_archive). The ``spans`` view
builds every row's MAP again, which costs ~2 µs a row (DuckDB's ``map()`` constructor), so
``SELECT count(*) FROM spans WHERE attributes['k'] = 'v'`` took seconds per million spans. This
module rewrites such a statement before it runs, in DuckDB's own syntax tree
(``json_serialize_sql`` / ``json_deserialize_sql``):

* ``attributes['k']`` (``map_extract_value``), ``element_at``/``map_extract``, ``map_keys``,
  ``map_values``, ``cardinality`` and ``map_contains`` of a ``spans`` relation's attributes
  with a constant key become SQL over the layout columns (reads.SPANS_WITH_LAYOUT_SQL): a CASE on
  the keyset id choosing the value at the key's position in each keyset that holds it (the
  positions come from ``attribute_keysets``, as the search's do), NULL or ``[]`` where the key
  is absent and NULL where the span has no attributes, exactly as on the MAP;
* that ``spans`` reference becomes a subquery giving SPEC 4's columns and the layout columns;
  every ``*`` over it excludes the layout columns, so ``SELECT *`` is unchanged.

Anything the rewrite cannot place for certain stays as written and runs on the view (slower,
never different): a lookup inside a lambda or in another scope than its relation's, an
unqualified ``attributes`` beside another relation that might have one, a ``spans`` that a CTE
shadows, a reference with a sample or column aliases. A statement that reads a relation as a
whole row (``SELECT s FROM spans s``) or uses ``COLUMNS('regex')`` over it is not rewritten at
all. The rewritten statement must bind to the original's column types, else the original runs;
its columns get the original's names. ``resource_attributes`` is a real MAP joined from
``resources`` (one per service and session), already as fast as a MAP column: left alone.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from collector.store.reads import (
    LAYOUT_COLUMNS,
    LAYOUT_PREFIX,
    SPANS_WITH_LAYOUT_SQL,
    keys_of,
    keyset_of,
    value_at,
    value_by_position,
    values_of,
)

from .sandbox import walk_nodes
from .search import CASE_LIMIT, KeyPlaces, attribute_key_maps

SPANS = "spans"
ATTRIBUTES = "attributes"
# Function name → what it gives of the map: the value, the value as a list, or the whole map's.
_KEYED = {"map_extract_value": "value", "element_at": "list", "map_extract": "list",
          "map_contains": "contains"}  # fmt: skip
_WHOLE = {"map_keys": "keys", "map_values": "values", "cardinality": "cardinality"}
# Nodes that open a scope of their own (their column names resolve there first).
_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
_TABLE_REFS = {"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EMPTY", "EXPRESSION_LIST",
               "PIVOT", "SHOW_REF", "COLUMN_DATA", "DELIM_GET"}  # fmt: skip


class _Unsafe(Exception):
    """The statement reads a rewritten relation in a way the rewrite cannot keep unchanged."""


@dataclass
class _Ref:
    """A ``spans`` reference of a FROM clause that the rewrite may replace."""

    node: dict[str, Any]
    binding: str  # the name its columns are qualified with: the alias, else the table name
    used: bool = False


@dataclass
class _Use:
    """An expression over a ``_Ref``'s attributes to replace: ``what`` of key ``key``."""

    node: dict[str, Any]
    ref: _Ref
    what: str
    key: str | None


def relation(
    con: duckdb.DuckDBPyConnection, statement: str, select: str, prefix: str
) -> duckdb.DuckDBPyRelation | None:
    """The relation of ``statement`` (``prefix`` + the SELECT ``select``, prefix being "" or an
    EXPLAIN), with attribute lookups on ``spans`` rewritten (see module); None when it has no
    result. Falls back to the statement as written when nothing is rewritten or the rewrite
    does not bind to the same column types."""
    rewritten = rewrite(con, select)
    if rewritten is None:
        return con.sql(statement)
    try:
        fast = con.sql(prefix + rewritten)
    except duckdb.Error:
        fast = None
    if prefix and fast is not None:
        return fast
    original = con.sql(statement)
    if fast is None or original is None or fast.types != original.types:
        return original
    names = ", ".join(f"#{i} AS {_q(name)}" for i, name in enumerate(original.columns, start=1))
    return fast.project(names)


def rewrite(con: duckdb.DuckDBPyConnection, sql: str) -> str | None:
    """``sql`` (one SELECT) with its attribute lookups on ``spans`` over the stored columns;
    None when there is nothing to rewrite (or it cannot be done for certain)."""
    doc = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if doc.get("error") or len(doc.get("statements", ())) != 1:
        return None
    root = doc["statements"][0]["node"]
    ctes = {str(e.get("key", "")).lower() for n in walk_nodes(root) for e in _cte_entries(n)}
    if SPANS in ctes:
        return None
    scan = _Scan(con, ctes)
    try:
        for node in walk_nodes(root):
            if node.get("type") == "SELECT_NODE":
                scan.select_node(node)
    except _Unsafe:
        return None
    if not scan.uses:
        return None
    scan.apply()
    out = con.execute("SELECT json_deserialize_sql(?::JSON)", [json.dumps(doc)]).fetchone()
    return str(out[0]) if out and out[0] else None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _cte_entries(node: dict[str, Any]) -> list[dict[str, Any]]:
    ctes = node.get("cte_map")
    if not isinstance(ctes, dict):
        return []
    return [e for e in ctes.get("map", ()) if isinstance(e, dict)]


def _text_constant(node: Any) -> str | None:
    """The text of a VARCHAR constant node, else None."""
    if not isinstance(node, dict) or node.get("class") != "CONSTANT":
        return None
    value = node.get("value") or {}
    if (value.get("type") or {}).get("id") != "VARCHAR" or value.get("is_null"):
        return None
    return str(value.get("value"))


class _Scan:
    """Finds, per SELECT node, the ``spans`` references of its FROM clause and the attribute
    lookups of its own expressions on them; :meth:`apply` rewrites them in place."""

    def __init__(self, con: duckdb.DuckDBPyConnection, ctes: set[str]):
        self.con = con
        self.ctes = ctes
        self.uses: list[_Use] = []
        self.refs: list[_Ref] = []
        self.columns: dict[str, bool] = {}

    def select_node(self, node: dict[str, Any]) -> None:
        refs: list[_Ref] = []
        others: list[bool] = []  # per other relation: whether it may have an attributes column
        conditions: list[Any] = []
        self._from(node.get("from_table"), refs, others, conditions)
        if not refs:
            return
        own = [node.get(k) for k in ("select_list", "where_clause", "group_expressions",
                                     "having", "qualify", "modifiers")]  # fmt: skip
        stars: list[dict[str, Any]] = []
        lone = refs[0] if len(refs) == 1 and not any(others) else None
        for expr in self._expressions([*own, *conditions]):
            self._expression(expr, refs, lone, stars)
        used = [r for r in refs if r.used]
        for star in stars:
            over = [
                r for r in used if star.get("relation_name", "").lower() in ("", r.binding.lower())
            ]
            if not over:
                continue
            if star.get("expr") is not None:
                raise _Unsafe("COLUMNS(...) over a rewritten relation")
            if star.get("relation_name"):
                star.setdefault("exclude_list", []).extend(LAYOUT_COLUMNS)
            else:
                star.setdefault("qualified_exclude_list", []).extend(
                    {"catalog": "", "schema": "", "table": r.binding, "column": c}
                    for r in over
                    for c in LAYOUT_COLUMNS
                )
        self.refs += used

    def _from(self, ref: Any, refs: list[_Ref], others: list[bool], conditions: list[Any]) -> None:
        if not isinstance(ref, dict):
            return
        kind = ref.get("type")
        if kind == "JOIN":
            self._from(ref.get("left"), refs, others, conditions)
            self._from(ref.get("right"), refs, others, conditions)
            conditions.append(ref.get("condition"))
        elif kind == "BASE_TABLE":
            name = str(ref.get("table_name", ""))
            plain = not (ref.get("schema_name") or ref.get("catalog_name"))
            if name.lower() == SPANS and plain and self._as_is(ref):
                refs.append(_Ref(ref, str(ref.get("alias") or name)))
            else:
                others.append(not plain or name.lower() in self.ctes or self._has_attributes(name))
        elif kind != "EMPTY":
            others.append(True)

    @staticmethod
    def _as_is(ref: dict[str, Any]) -> bool:
        """A reference the subquery can stand in for: no sample, column aliases or AT clause."""
        return not (ref.get("sample") or ref.get("column_name_alias") or ref.get("at_clause"))

    def _has_attributes(self, table: str) -> bool:
        key = table.lower()
        if key not in self.columns:
            self.columns[key] = bool(
                self.con.execute(
                    "SELECT count(*) FROM duckdb_columns() WHERE lower(table_name) = ?"
                    " AND lower(column_name) = ?",
                    [key, ATTRIBUTES],
                ).fetchone()[0]
            )
        return self.columns[key]

    def _expressions(self, roots: list[Any]):
        """The expression nodes of one scope: not into subqueries, lambdas or table refs."""
        stack = list(roots)
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
                continue
            if not isinstance(item, dict):
                continue
            kind = item.get("type") if isinstance(item.get("type"), str) else ""
            if item.get("class") in ("SUBQUERY", "LAMBDA") or kind in _NODES:
                continue
            if "class" not in item and kind in _TABLE_REFS:
                continue
            if "class" in item:
                yield item
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))

    def _expression(
        self, expr: dict[str, Any], refs: list[_Ref], lone: _Ref | None, stars: list[dict]
    ) -> None:
        cls = expr.get("class")
        if cls == "STAR":
            stars.append(expr)
            return
        if cls == "COLUMN_REF":
            names = [str(n).lower() for n in expr.get("column_names", ())]
            if len(names) == 1 and any(names[0] == r.binding.lower() for r in refs):
                raise _Unsafe("a whole row of spans")
            return
        what, key, column = self._lookup(expr)
        if what is None:
            return
        ref = self._resolve(column, refs, lone)
        if ref is None:
            return
        ref.used = True
        self.uses.append(_Use(expr, ref, what, key))
        expr["children"] = []  # consumed: its column ref is not walked as a whole row

    @staticmethod
    def _lookup(expr: dict[str, Any]) -> tuple[str | None, str | None, Any]:
        """(what, key, the map's column ref) when ``expr`` is a lookup the rewrite knows."""
        children = expr.get("children") or []
        if expr.get("class") == "OPERATOR" and expr.get("type") == "ARRAY_EXTRACT":
            name, what = "", "value"
        elif expr.get("class") == "FUNCTION" and not (
            expr.get("catalog")
            or str(expr.get("schema") or "").lower() not in ("", "main")
            or expr.get("distinct")
            or expr.get("filter")
            or (expr.get("order_bys") or {}).get("orders")
        ):
            name = str(expr.get("function_name", "")).lower()
            what = _KEYED.get(name) or _WHOLE.get(name)
        else:
            return None, None, None
        if what is None or not children or children[0].get("class") != "COLUMN_REF":
            return None, None, None
        if name in _WHOLE:
            return (what, None, children[0]) if len(children) == 1 else (None, None, None)
        key = _text_constant(children[1]) if len(children) == 2 else None
        return (what, key, children[0]) if key is not None else (None, None, None)

    @staticmethod
    def _resolve(column: dict[str, Any], refs: list[_Ref], lone: _Ref | None) -> _Ref | None:
        names = [str(n) for n in column.get("column_names", ())]
        if len(names) == 1 and names[0].lower() == ATTRIBUTES:
            return lone
        if len(names) == 2 and names[1].lower() == ATTRIBUTES:
            found = [r for r in refs if r.binding.lower() == names[0].lower()]
            return found[0] if len(found) == 1 else None
        return None

    def apply(self) -> None:
        """Replace every lookup and every used reference in the tree."""
        keys = sorted({u.key for u in self.uses if u.key is not None})
        places = attribute_key_maps(self.con, keys) or {}
        sql = [_replacement(u, places.get(u.key or "", KeyPlaces())) for u in self.uses]
        parsed = _parse(self.con, "SELECT " + ", ".join(sql))["select_list"]
        for use, new in zip(self.uses, parsed, strict=True):
            alias = use.node.get("alias", "")
            use.node.clear()
            use.node.update(new, alias=alias)
        source = _parse(self.con, f"SELECT * FROM ({SPANS_WITH_LAYOUT_SQL}) AS s")["from_table"]
        for ref in self.refs:
            ref.node.clear()
            ref.node.update(copy.deepcopy(source), alias=ref.binding)


def _parse(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    doc = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    return doc["statements"][0]["node"]


def _replacement(use: _Use, places: KeyPlaces) -> str:
    """SQL over the layout columns giving what ``use`` asks of the span's attributes MAP."""
    p = f"{_q(use.ref.binding)}.{LAYOUT_PREFIX}"
    keys = keys_of(p)
    if use.what == "keys":
        return keys
    if use.what == "cardinality":
        return f"len({keys})::UBIGINT"
    if use.what == "values":
        return f"(CASE WHEN {keys} IS NOT NULL THEN {values_of(p)} END)"
    key = _literal(use.key or "")
    if use.what == "contains":
        return f"list_contains({keys}, {key})"
    found = places.keysets
    if found is None or len(found) > CASE_LIMIT:  # look the position up per row
        value = value_by_position(p, f"list_position({keys}, {key})")
        present = f"list_contains({keys}, {key})"
        if use.what == "value":
            return value
        return (
            f"(CASE WHEN {present} THEN [{value}] WHEN {keys} IS NOT NULL THEN []::VARCHAR[] END)"
        )
    positions: dict[int, list[str]] = {}
    for ks, pos in found:
        positions.setdefault(int(pos), []).append(f"{int(ks)}::UBIGINT")
    wrap = "{}" if use.what == "value" else "[{}]"
    whens = " ".join(
        f"WHEN {keyset_of(p)} IN ({', '.join(ids)}) THEN {wrap.format(value_at(p, pos))}"
        for pos, ids in positions.items()
    )
    if use.what == "value":
        return f"(CASE {whens} END)" if whens else "NULL::VARCHAR"
    return f"(CASE {whens} WHEN {keys} IS NOT NULL THEN []::VARCHAR[] END)"
