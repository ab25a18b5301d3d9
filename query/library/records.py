"""Rows → JSON-ready records: SPEC 4 column names, timestamps as RFC 3339 UTC with nanoseconds.

DuckDB hands TIMESTAMP_NS values to Python as microsecond datetimes, so timestamp columns are
selected as ``epoch_ns(...)`` and formatted here; the same records go out through every output
format, the CLI (``--db`` or ``--server``) and the API.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.store.reads import (
    KEYSET_JOIN,
    LOG_ROWS,
    RESOURCE_ROWS,
    SPAN_ATTRIBUTES,
    SPAN_ROWS,
    TABLES,
    TS,
    V1_LOGS,
    V1_SPANS,
)

from .paging import KEY_PREFIX, Key, key_columns, order_by
from .values import arrow_values, format_ts, jsonable, parse_ts

__all__ = [
    "COLUMNS",
    "METRIC_VALUES",
    "fetch_records",
    "format_ts",
    "jsonable",
    "parse_ts",
    "select_list",
    "table_records",
    "with_resources",
]

# The columns of the tables the read side returns (SPEC 4): those of each table's one
# definition (collector/store/schema.py; SPEC 4's spans and logs as their views show them),
# by name and in that order, but these. Records are read by name (fetch_records).
NOT_RETURNED: dict[str, frozenset[str]] = {
    "spans": frozenset(
        {
            "flags",
            "dropped_attributes_count",
            "dropped_events_count",
            "dropped_links_count",
            "scope_attributes",
        }
    ),
    "logs": frozenset({"flags", "scope_version", "dropped_attributes_count"}),
    "metric_points": frozenset({"exemplars", "flags", "scope_version"}),
}
DEFINITIONS: dict[str, list[tuple[str, str]]] = {
    "spans": V1_SPANS,
    "logs": V1_LOGS,
    **{t: TABLES[t] for t in ("metric_points", "sessions", "session_events")},
}
COLUMNS: dict[str, list[str]] = {
    table: [c for c, _ in columns if c not in NOT_RETURNED.get(table, ())]
    for table, columns in DEFINITIONS.items()
}

TS_COLUMNS = {c for cols in [*TABLES.values(), V1_SPANS] for c, t in cols if t == TS}

# span_data stores NULL for no events or links (collector.columns.sparse_list).
_NESTED = {
    "events": "list_transform(coalesce({p}events, []), e -> {{'time': epoch_ns(e.time),"
    " 'name': e.name, 'attributes': e.attributes}})",
    "links": "coalesce({p}links, [])",
}


# Where a read of spans or log records has its resource attributes, it selects the resource id
# under this name; with_resources puts the attributes in its place.
RESOURCE_ID = "_resource_id"

# The spans columns that span_data does not store, over a span_data row ``s`` joined to its
# keyset row ``k`` (see span_rows_sql).
_SPAN_DERIVED = {
    "end_time": "epoch_ns(s.start_time) + s.duration_ns AS end_time",
    "attributes": f"{SPAN_ATTRIBUTES.format(k='k', s='s')} AS attributes",
    "resource_attributes": f"s.resource_id AS {RESOURCE_ID}",
}


# ... and of the logs, over a log_data row ``l``.
_LOG_DERIVED = {"resource_attributes": f"l.resource_id AS {RESOURCE_ID}"}
_DERIVED = {("spans", "s"): _SPAN_DERIVED, ("logs", "l"): _LOG_DERIVED}


def select_list(table: str, alias: str = "") -> str:
    """The SELECT list of a table's read columns, timestamps as epoch nanoseconds."""
    prefix = f"{alias}." if alias else ""
    derived = _DERIVED.get((table, alias), {})
    parts = []
    for c in COLUMNS[table]:
        if c in derived:
            parts.append(derived[c])
        elif c in TS_COLUMNS:
            parts.append(f"epoch_ns({prefix}{c}) AS {c}")
        elif c in _NESTED and table == "spans":
            parts.append(f"{_NESTED[c].format(p=prefix)} AS {c}")
        else:
            parts.append(f"{prefix}{c}")
    return ", ".join(parts)


def span_rows_sql(
    where: str, order: str, limit: bool = False, keys: Sequence[Key] = (), source: str = SPAN_ROWS
) -> str:
    """The read columns of the spans (SPEC 4) whose span_rows rows meet ``where`` (a WHERE
    clause on its columns, or ""), in ``order`` (output column names), with a
    ``LIMIT ?`` parameter when ``limit``. ``keys``: a paged read (query.library.paging),
    ordered by them, their values selected too; ``source``: the rows (default span_rows).

    Filtering, ordering and limiting run on span_rows alone; only the rows that remain are
    joined to their attribute keys (through the ``spans`` view, DuckDB would join every match
    before the LIMIT: 10x slower for a search over many spans), and their resources are looked
    up by id after the read (:func:`with_resources`)."""
    inner, outer = _keyed(source, where, order, limit, keys)
    joins = KEYSET_JOIN.format(s="s", k="k")
    return f"SELECT {select_list('spans', 's')}{outer[0]} FROM ({inner}) s {joins}{outer[1]}"


def log_rows_sql(where: str, order: str, limit: bool = False, keys: Sequence[Key] = ()) -> str:
    """The read columns of the log records (SPEC 4) whose log_data rows meet ``where``, in
    ``order``, with a ``LIMIT ?`` parameter when ``limit`` (``keys``: as span_rows_sql): like
    :func:`span_rows_sql`, the rows are chosen on log_data alone, and their resources looked up
    by id after the read (through the ``logs`` view, the benchmark's ``session logs S
    --severity error`` took 11.2 ms warm at 10 M spans; joined after the choice 8.1)."""
    inner, outer = _keyed(LOG_ROWS, where, order, limit, keys)
    return f"SELECT {select_list('logs', 'l')}{outer[0]} FROM ({inner}) l{outer[1]}"


def _keyed(
    source: str, where: str, order: str, limit: bool, keys: Sequence[Key]
) -> tuple[str, tuple[str, str]]:
    """The inner read of :func:`span_rows_sql` and :func:`log_rows_sql`, and what the outer
    one adds to its SELECT list and as its ORDER BY."""
    if keys:
        order = order_by(keys)
        hidden = [f"{KEY_PREFIX}{i}" for i in range(len(keys))]
        pairs = zip(hidden, keys, strict=True)
        outer_order = ", ".join(f"{h}{' DESC' if k.desc else ''}" for h, k in pairs)
        inner = f"SELECT *{key_columns(keys)} FROM {source}{where} ORDER BY {order}"
        return inner + (" LIMIT ?" if limit else ""), (
            ", " + ", ".join(hidden),
            f" ORDER BY {outer_order}",
        )
    inner = f"SELECT * FROM {source}{where}"
    if limit:
        inner += f" ORDER BY {order} LIMIT ?"
    return inner, ("", f" ORDER BY {order}")


# The metric_points columns whose floats are measurements: NaN and ±Infinity there are data,
# written as "NaN", "Infinity", "-Infinity" (SPEC 8); in other columns as null.
METRIC_VALUES = frozenset(
    {"value", "sum", "min", "max", "explicit_bounds", "zero_threshold", "quantiles"}
)


def _column(name: str, array: pa.ChunkedArray, data: bool) -> list[Any]:
    values = arrow_values(array, data)
    if name in TS_COLUMNS and pa.types.is_integer(array.type):  # selected as epoch_ns
        return [format_ts(v) for v in values]
    if name == "events" and pa.types.is_list(array.type):  # times selected as epoch_ns
        return [
            None if v is None else [{**e, "time": format_ts(e["time"])} for e in v if e is not None]
            for v in values
        ]
    return values


def fetch_records(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] = (),
    data: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Run a read and return its rows as records (timestamp columns selected as epoch_ns).
    ``data``: the columns whose non-finite floats are data (:data:`METRIC_VALUES`); elsewhere
    they are null.

    Rows travel as Arrow (about twice as fast as ``fetchall`` for rows with maps and lists)
    and are converted column by column (:func:`query.library.values.arrow_values`)."""
    return table_records(with_resources(con, con.execute(sql, list(params)).to_arrow_table()), data)


def with_resources(con: duckdb.DuckDBPyConnection, table: pa.Table) -> pa.Table:
    """A read of :func:`span_rows_sql` or :func:`log_rows_sql` with its rows'
    ``resource_attributes`` in place of their resource id (other tables as they are). A read
    that may drop rows looks their resources up after that, for the rows it keeps.

    The resources are looked up by id, in one statement with the ids as constants
    (RESOURCE_ROWS), which the scan filters on: on a lake, a join in the read scanned every
    resource's attributes (80 k resources with 10 M spans: a trace's read 80 -> 52 ms); on a
    file, DuckDB filtered the join's scan by the ids already (no change)."""
    if RESOURCE_ID not in table.column_names:
        return table
    ids = table[RESOURCE_ID]
    wanted = pc.unique(ids.drop_null()).to_pylist()
    found = (
        con.execute(
            f"SELECT resource_id, attributes FROM {RESOURCE_ROWS}"
            f" WHERE resource_id IN ({', '.join('?' * len(wanted))})",
            wanted,
        ).to_arrow_table()
        if wanted
        else None
    )
    if found is None or found.num_rows == 0:
        attributes = pa.nulls(table.num_rows, _RESOURCE_TYPE)
    else:
        at = pc.index_in(ids, value_set=found["resource_id"].combine_chunks())
        attributes = found["attributes"].combine_chunks().take(at)
    i = table.column_names.index(RESOURCE_ID)
    return table.set_column(i, "resource_attributes", attributes)


_RESOURCE_TYPE = pa.map_(pa.string(), pa.string())


def table_records(table: pa.Table, data: Collection[str] = ()) -> list[dict[str, Any]]:
    """The rows of an Arrow table read as :func:`fetch_records` reads them, as records."""
    names = table.column_names
    columns = [_column(n, table.column(i), n in data) for i, n in enumerate(names)]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
