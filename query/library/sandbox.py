"""What user SQL may touch (SPEC 5): one project's rows, the telemetry tables, nothing else.

Two layers, both per reader connection (a DuckDB cursor: its TEMP catalog is its own):

* **Project scope** — :func:`scope` shadows every table with a ``project`` column by a TEMP view
  of the same name over the real table (catalog-qualified, so the view cannot be bypassed by it)
  holding only the project's rows. Unqualified names resolve to TEMP first, so every query of the
  query library and of the user sees only that project.
* **Statement check** — :func:`check_select` parses the statement into DuckDB's own AST
  (``json_serialize_sql``, which only accepts SELECT) and walks all of it: every table reference
  must be an unqualified name of a readable table or of a CTE of the statement (no ``main.spans``,
  ``memory.main.spans``, ``'file.csv'``, no names of other catalog objects); table functions are
  limited to ``range``/``generate_series``/``unnest``/``pragma_table_info`` (so no ``read_*``,
  ``glob``, ``query_table``, ``duckdb_*``, other ``pragma_*``); scalar functions that read the
  environment, settings or sequences are refused. Python replacement scans are switched off for
  the connection.
"""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb

from .errors import QueryError

# pragma_table_info (PRAGMA table_info('t')) lists column names and types from the catalog only.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "pragma_table_info"})
SCALAR_DENIED = frozenset(
    {"getenv", "current_setting", "nextval", "currval", "setval", "setseed", "read_text"}
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCOPED = "__roomscope_scope"  # TEMP marker view: this cursor is already scoped


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def tables(con: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """Tables and views of the store's main schema → whether they have a ``project`` column."""
    rows = con.execute(
        "SELECT table_name, bool_or(column_name = 'project') FROM duckdb_columns()"
        " WHERE database_name = current_database() AND schema_name = 'main'"
        " GROUP BY table_name"
    ).fetchall()
    return {name: bool(has) for name, has in rows}


def scope(con: duckdb.DuckDBPyConnection, project: str | None) -> frozenset[str]:
    """Restrict ``con`` to ``project`` (None: every project); the table names user SQL may read.

    With a project, only tables that carry a project column are readable by user SQL (the
    others, like trace_index, stay usable by the query library's own joins)."""
    con.execute("SET python_enable_replacements = false")
    found = tables(con)
    if project is None:
        return frozenset(found)
    catalog = _one(con, "SELECT current_database()")
    if not _one(
        con, "SELECT count(*) FROM duckdb_views() WHERE temporary AND view_name = ?", [_SCOPED]
    ):
        for name, has_project in found.items():
            if has_project:
                con.execute(
                    f"CREATE TEMP VIEW {_q(name)} AS SELECT * FROM {_q(catalog)}.main.{_q(name)}"
                    f" WHERE project = {_literal(project)}"
                )
        con.execute(f"CREATE TEMP VIEW {_SCOPED} AS SELECT {_literal(project)} AS project")
    return frozenset(name for name, has in found.items() if has)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The one value a query of one row answers."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise QueryError(f"no answer to {sql!r}")
    return row[0]


def _ast(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    doc = json.loads(_one(con, "SELECT json_serialize_sql(?)", [sql]))
    if doc.get("error"):
        raise QueryError(f"SQL error: {doc.get('error_message', 'cannot parse')}")
    if len(doc.get("statements", ())) != 1:
        raise QueryError("one SQL statement at a time, please")
    return doc


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _table_functions(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    rows = con.execute(
        "SELECT DISTINCT lower(function_name) FROM duckdb_functions()"
        " WHERE function_type IN ('table', 'table_macro')"
    ).fetchall()
    return frozenset(r[0] for r in rows)


def _catalog_names(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    rows = con.execute(
        "SELECT lower(table_name) FROM duckdb_tables()"
        " UNION SELECT lower(view_name) FROM duckdb_views()"
    ).fetchall()
    return frozenset(r[0] for r in rows)


def check_select(con: duckdb.DuckDBPyConnection, sql: str, readable: frozenset[str]) -> None:
    """Raise QueryError unless the SELECT ``sql`` only reads ``readable`` tables (see module)."""
    nodes = list(_walk(_ast(con, sql)))
    readable_lower = {t.lower() for t in readable}
    ctes = {
        str(entry.get("key", "")).lower()
        for node in nodes
        if isinstance(node.get("cte_map"), dict)
        for entry in node["cte_map"].get("map", ())
        if isinstance(entry, dict)
    }
    for cte in ctes:
        if not _NAME.match(cte):
            raise QueryError(f"refused: CTE name {cte!r} must be a plain identifier")
    # A CTE name used outside its scope falls through to the catalog: it must name nothing there.
    taken = (_catalog_names(con) - readable_lower) & ctes
    if taken:
        raise QueryError(f"refused: CTE name {sorted(taken)[0]!r} is taken by a system table")
    denied_tables = _table_functions(con) - TABLE_FUNCTIONS
    for node in nodes:
        kind = node.get("type")
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if node.get("schema_name") or node.get("catalog_name"):
                raise QueryError(
                    f"refused: qualified table names are not allowed ({name}); use the plain name"
                )
            if not _NAME.match(name) or name.lower() not in readable_lower | ctes:
                raise QueryError(
                    f"refused: unknown table {name!r}; readable: {', '.join(sorted(readable))}"
                )
        elif kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            name = str(fn.get("function_name", "")).lower()
            if name not in TABLE_FUNCTIONS or fn.get("schema") or fn.get("catalog"):
                raise QueryError(f"refused: table function {name}() is not allowed here")
        elif kind == "SHOW_REF" and node.get("query") is None:
            name = str(node.get("table_name", "")).strip('"').lower()
            if name not in readable_lower and name not in ("tables", "all tables"):
                raise QueryError(f"refused: SHOW {name} is not allowed")
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if node.get("schema") or node.get("catalog"):
                raise QueryError("refused: qualified function names are not allowed")
            if name in SCALAR_DENIED or name in denied_tables:
                raise QueryError(f"refused: function {name}() is not allowed in roomscope sql")
