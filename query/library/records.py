"""Rows → JSON-ready records: SPEC 4 column names, timestamps as RFC 3339 UTC with nanoseconds.

DuckDB hands TIMESTAMP_NS values to Python as microsecond datetimes, so timestamp columns are
selected as ``epoch_ns(...)`` and formatted here; the same records go out through every output
format, the CLI (``--db`` or ``--server``) and the API.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from collector.store.reads import (
    LOG_JOINS,
    LOG_ROWS,
    SPAN_ATTRIBUTES,
    SPAN_JOINS,
    SPAN_ROWS,
    TABLES,
    TS,
    V1_LOGS,
    V1_SPANS,
)

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


# The spans columns that span_data does not store, over a span_data row ``s`` joined to its
# resources row ``r`` (see span_rows_sql).
_SPAN_DERIVED = {
    "end_time": "epoch_ns(s.start_time) + s.duration_ns AS end_time",
    "attributes": f"{SPAN_ATTRIBUTES.format(k='k', s='s')} AS attributes",
    "resource_attributes": "r.attributes AS resource_attributes",
}


# ... and of the logs, over a log_data row ``l`` joined to its resources row ``r``.
_LOG_DERIVED = {"resource_attributes": "r.attributes AS resource_attributes"}
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


def span_rows_sql(where: str, order: str, limit: bool = False) -> str:
    """The read columns of the spans (SPEC 4) whose span_rows rows meet ``where`` (a WHERE
    clause on its columns, or ""), in ``order`` (output column names), with a
    ``LIMIT ?`` parameter when ``limit``.

    Filtering, ordering and limiting run on span_rows alone; only the rows that remain are
    joined to their resources and attribute keys (through the ``spans`` view, DuckDB would join
    every match before the LIMIT: 10x slower for a search over many spans)."""
    inner = f"SELECT * FROM {SPAN_ROWS}{where}"
    if limit:
        inner += f" ORDER BY {order} LIMIT ?"
    joins = SPAN_JOINS.format(s="s", r="r", k="k")
    return f"SELECT {select_list('spans', 's')} FROM ({inner}) s {joins} ORDER BY {order}"


def log_rows_sql(where: str, order: str, limit: bool = False) -> str:
    """The read columns of the log records (SPEC 4) whose log_data rows meet ``where``, in
    ``order``, with a ``LIMIT ?`` parameter when ``limit``: like :func:`span_rows_sql`, the
    rows are chosen on log_data alone and only they are joined to their resources (through the
    ``logs`` view, the benchmark's ``session logs S --severity error`` took 11.2 ms warm at
    10 M spans; this way 8.1)."""
    inner = f"SELECT * FROM {LOG_ROWS}{where} ORDER BY {order}" + (" LIMIT ?" if limit else "")
    return f"SELECT {select_list('logs', 'l')} FROM ({inner}) l {LOG_JOINS} ORDER BY {order}"


def format_ts(ns: int | None) -> str | None:
    """Epoch nanoseconds → ``2026-11-24T16:20:00.123456789Z``."""
    if ns is None:
        return None
    seconds, frac = divmod(int(ns), 1_000_000_000)
    base = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    return f"{base:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def parse_ts(text: str) -> int:
    """The inverse of :func:`format_ts` (RFC 3339 UTC text → epoch ns)."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    seconds = int((base - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def jsonable(value: Any) -> Any:
    """Any DuckDB value → something json.dumps accepts (maps → objects, times → text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def to_record(names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    record = {}
    for name, value in zip(names, row, strict=True):
        if name in TS_COLUMNS and isinstance(value, int):
            record[name] = format_ts(value)
        elif name == "events" and isinstance(value, list):
            record[name] = [
                {**jsonable(e), "time": format_ts(e.get("time"))} for e in value if e is not None
            ]
        else:
            record[name] = jsonable(value)
    return record


Convert = Callable[[Any], Any] | None


def _converter(t: pa.DataType) -> Convert:
    """What turns an Arrow ``to_pylist`` value into what DuckDB's ``fetchall`` gives: maps
    (lists of pairs) → dicts, whole decimals (HUGEINT sums) → ints; None when nothing to do."""
    if pa.types.is_map(t):
        item = _converter(t.item_type)
        if item is None:
            return lambda v: None if v is None else dict(v)
        return lambda v: None if v is None else {k: item(x) for k, x in v}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _converter(t.value_type)
        if inner is None:
            return None
        return lambda v: None if v is None else [inner(x) for x in v]
    if pa.types.is_struct(t):
        fields = [(f.name, _converter(f.type)) for f in t]
        if all(c is None for _, c in fields):
            return None
        return lambda v: None if v is None else {n: (c(v[n]) if c else v[n]) for n, c in fields}
    if pa.types.is_decimal(t) and t.scale == 0:
        return lambda v: None if v is None else int(v)
    return None


def fetch_records(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Run a read and return its rows as records (timestamp columns selected as epoch_ns).

    Rows travel as Arrow (about twice as fast as ``fetchall`` for rows with maps and lists)."""
    table = con.execute(sql, list(params)).to_arrow_table()
    names = table.column_names
    columns = []
    for column in table.columns:
        values = column.to_pylist()
        convert = _converter(column.type)
        columns.append(values if convert is None else [convert(v) for v in values])
    return [to_record(names, row) for row in zip(*columns, strict=True)]
