"""What user SQL may touch (SPEC 5): one project's rows, the telemetry tables, nothing else.

Three layers, the last two per reader connection (a DuckDB cursor: its TEMP catalog is its own):

* **Statement kind** — :func:`check_read_only` lets one read statement through (SELECT, WITH,
  FROM, VALUES, SHOW, DESCRIBE, SUMMARIZE, PIVOT with an IN list, EXPLAIN of those) and refuses
  every other kind with a reason of its own (``INSTALL`` is not a ``LOAD``). ``IMPORT DATABASE``
  is refused before DuckDB parses anything, because its parser reads the named directory's
  files.
* **Project scope** — :func:`scope` shadows every table with a ``project`` column by a TEMP view
  of the same name over the real table (catalog-qualified, so the view cannot be bypassed by it)
  holding only the project's rows. Unqualified names resolve to TEMP first, so every query of the
  query library and of the user sees only that project.
* **Statement check** — :func:`check_select` parses the statement into DuckDB's own AST
  (``json_serialize_sql``, which only accepts SELECT) and walks all of it: every table reference
  must be an unqualified name of a readable table or of a CTE of the statement (no ``main.spans``,
  ``memory.main.spans``, ``'file.csv'``, no names of other catalog objects); table functions are
  limited to ``range``/``generate_series``/``unnest``/``pragma_table_info`` (so no ``read_*``,
  ``glob``, ``query_table``, ``duckdb_*``, other ``pragma_*``); functions may not name a catalog
  or a schema other than ``main`` (the parser itself writes ``main.list_value`` for ``[1, 2]``,
  ``main.row`` for ``(1, 2)``, ``main.struct_pack`` for ``{'x': 1}``); scalar functions that read
  the environment, settings, sequences, statistics or plans of other statements are refused, and
  so are the system macros whose body reads a table. Python replacement scans are switched off
  for the connection.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import duckdb

from .errors import QueryError

# pragma_table_info (PRAGMA table_info('t')) lists column names and types from the catalog only.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "pragma_table_info"})
# Scalar functions that reach past the statement: the environment, settings, sequences, the
# planner (json_serialize_plan binds any SQL, read_parquet's file schema included), the table
# statistics under a project's view (stats), the log.
SCALAR_DENIED = frozenset(
    {
        "getenv",
        "current_setting",
        "nextval",
        "currval",
        "setval",
        "setseed",
        "read_text",
        "json_serialize_plan",
        "stats",
        "write_log",
    }
)
# Schemas a function may be qualified with: the parser writes main.list_value for [1, 2].
FUNCTION_SCHEMAS = frozenset({"", "main"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCOPED = "__roomscope_scope"  # TEMP marker view: this cursor is already scoped


READS = "use SELECT, WITH, SHOW, DESCRIBE, SUMMARIZE or EXPLAIN"
_EXPLAIN = re.compile(r"^\s*explain\s+(analy[sz]e\s+)?", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_]+")
# Why a statement kind is refused, by its leading keyword(s): DuckDB files INSTALL under LOAD,
# PRAGMA and CHECKPOINT under CALL, RESET and USE under SET, TRUNCATE under DELETE.
_EXTENSIONS = "extensions cannot be installed or loaded"
_FILES = "it cannot read or write files"
_OTHER_DBS = "it reads this store only, no other database"
_SETTINGS = "settings cannot be changed"
_MAINTENANCE = "maintenance is the collector's job"
_TRANSACTIONS = "each statement runs on its own"
_PREPARED = "send the statement itself"
REFUSED_WHY: dict[str, str] = {
    "INSTALL": _EXTENSIONS,
    "FORCE INSTALL": _EXTENSIONS,
    "LOAD": _EXTENSIONS,
    "UPDATE EXTENSIONS": _EXTENSIONS,
    "ATTACH": _OTHER_DBS,
    "DETACH": _OTHER_DBS,
    "USE": _OTHER_DBS,
    "COPY": _FILES,
    "EXPORT": _FILES,
    "IMPORT": _FILES,
    "SET": _SETTINGS,
    "RESET": _SETTINGS,
    "PRAGMA": "settings and database details are off limits; PRAGMA table_info('spans') works",
    "CALL": "no procedures; table functions go in FROM",
    "CHECKPOINT": _MAINTENANCE,
    "FORCE CHECKPOINT": _MAINTENANCE,
    "VACUUM": _MAINTENANCE,
    "ANALYZE": _MAINTENANCE,
    "BEGIN": _TRANSACTIONS,
    "START": _TRANSACTIONS,
    "COMMIT": _TRANSACTIONS,
    "END": _TRANSACTIONS,
    "ROLLBACK": _TRANSACTIONS,
    "ABORT": _TRANSACTIONS,
    "PREPARE": _PREPARED,
    "EXECUTE": _PREPARED,
    "DEALLOCATE": _PREPARED,
}
_STATEMENT_WORDS = {
    "INSERT", "UPDATE", "DELETE", "TRUNCATE", "MERGE", "CREATE", "DROP", "ALTER", "COMMENT",
}  # fmt: skip


def _words(sql: str) -> list[str]:
    """Each token of ``sql`` in order (comments skipped): keywords and names upper case, other
    tokens (literals, operators) as ``""``."""
    words = []
    for offset, kind in duckdb.tokenize(sql):
        word = _WORD.match(sql, offset)
        named = kind in (duckdb.token_type.keyword, duckdb.token_type.identifier)
        words.append(word.group(0).upper() if named and word else "")
    return words


def _refused(words: list[str], kind: duckdb.StatementType) -> QueryError:
    """The refusal of a statement that is not a read, from its leading ``words`` (see
    :func:`_words`): its own keyword and the reason."""
    label = " ".join(words[:2])
    if label not in REFUSED_WHY:
        label = words[0] if words else ""
    why = REFUSED_WHY.get(label)
    if why is None and label not in _STATEMENT_WORDS:
        label = kind.name.replace("_", " ")  # e.g. WITH … DELETE: DuckDB's name for it
    detail = f"{label} statements are not allowed" + (f": {why}" if why else "")
    return QueryError(f"refused: roomscope sql is read-only ({detail}); {READS}")


def _extract(sql: str) -> list[Any]:
    try:
        return list(duckdb.extract_statements(sql))
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {str(exc).splitlines()[0]}") from None


def check_read_only(sql: str) -> str:
    """The single statement of ``sql`` if it only reads (SELECT/WITH/FROM, SHOW, DESCRIBE,
    SUMMARIZE, PIVOT with an IN list, EXPLAIN of a read); otherwise a QueryError with the
    reason for that kind of statement."""
    words = _words(sql)
    # DuckDB's parser itself reads the files named by IMPORT DATABASE: refuse before parsing.
    if any(a == "IMPORT" and b == "DATABASE" for a, b in itertools.pairwise(words)):
        raise QueryError(
            f"refused: roomscope sql is read-only (IMPORT statements are not allowed: {_FILES});"
            f" {READS}"
        )
    statements = _extract(sql)
    if not statements:
        raise QueryError("no SQL statement given")
    if len(statements) > 1:
        if words[:1] == ["PIVOT"] and len(statements) == 2:
            raise QueryError(
                "refused: a PIVOT without IN list first creates a type from the data, and roomscope"
                " sql is read-only; name the values: PIVOT spans ON status_code IN ('OK', 'ERROR')"
                " USING count(*)"
            )
        raise QueryError("one SQL statement at a time, please")
    st = statements[0]
    kind, head = st.type, words
    if kind == duckdb.StatementType.EXPLAIN:
        text = _EXPLAIN.sub("", st.query, count=1)
        inner = _extract(text)
        kind = inner[0].type if len(inner) == 1 else duckdb.StatementType.INVALID
        head = _words(text)
    # DuckDB turns PRAGMA x into SELECT * FROM pragma_x(); only table_info is a plain read.
    pragma = head[:1] == ["PRAGMA"] and head[1:2] != ["TABLE_INFO"]
    if kind != duckdb.StatementType.SELECT or pragma:
        raise _refused(head, kind)
    return str(st.query)


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


def walk_nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every object of a json_serialize_sql tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_nodes(value)


# _denied_functions by the extensions loaded: the function catalog of this process's DuckDB
# is fixed by them (user SQL cannot create functions), and reading it costs 65-120 ms a query.
_DENIED: dict[tuple[str, ...], frozenset[str]] = {}


def _denied_functions(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The functions user SQL may not call in expressions: :data:`SCALAR_DENIED`, the names that
    are only table functions (``repeat`` and ``histogram`` also name ordinary scalar and
    aggregate functions, so they stay), and the system macros whose body reads a table
    (``pg_get_viewdef``, ``get_block_size``, …)."""
    (loaded,) = con.execute(
        "SELECT list(extension_name ORDER BY extension_name) FROM duckdb_extensions() WHERE loaded"
    ).fetchone() or ([],)
    key = tuple(loaded or ())
    if key not in _DENIED:
        _DENIED[key] = _read_denied(con)
    return _DENIED[key]


def _read_denied(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    rows = con.execute(
        "SELECT DISTINCT lower(function_name), function_type, coalesce(macro_definition, '')"
        " FROM duckdb_functions()"
    ).fetchall()
    tables = {name for name, kind, _ in rows if kind in ("table", "table_macro")}
    expressions = {name for name, kind, _ in rows if kind in ("scalar", "aggregate", "macro")}
    reading = {name for name, kind, body in rows if kind == "macro" and "SELECT" in body.upper()}
    return frozenset(SCALAR_DENIED | (tables - TABLE_FUNCTIONS - expressions) | reading)


def _qualified(fn: dict[str, Any]) -> str | None:
    """A function node's qualification when it is one user SQL may not use, else None."""
    catalog, schema = str(fn.get("catalog") or ""), str(fn.get("schema") or "")
    if catalog or schema.lower() not in FUNCTION_SCHEMAS:
        return ".".join(part for part in (catalog, schema) if part)
    return None


def _catalog_names(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    rows = con.execute(
        "SELECT lower(table_name) FROM duckdb_tables()"
        " UNION SELECT lower(view_name) FROM duckdb_views()"
    ).fetchall()
    return frozenset(r[0] for r in rows)


def check_select(con: duckdb.DuckDBPyConnection, sql: str, readable: frozenset[str]) -> None:
    """Raise QueryError unless the SELECT ``sql`` only reads ``readable`` tables (see module)."""
    nodes = list(walk_nodes(_ast(con, sql)))
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
    denied = _denied_functions(con)
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
            if name not in TABLE_FUNCTIONS or _qualified(fn) is not None:
                raise QueryError(f"refused: table function {name}() is not allowed here")
        elif kind == "SHOW_REF" and node.get("query") is None:
            name = str(node.get("table_name", "")).strip('"').lower()
            if name not in readable_lower and name not in ("tables", "all tables"):
                raise QueryError(f"refused: SHOW {name} is not allowed")
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            prefix = _qualified(node)
            if prefix is not None:
                raise QueryError(
                    f"refused: qualified function names are not allowed ({prefix}.{name});"
                    " use the plain name"
                )
            if name in denied:
                raise QueryError(f"refused: function {name}() is not allowed in roomscope sql")
