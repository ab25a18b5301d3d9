"""Read-only ad-hoc SQL over the tables: one statement, reads only, results as columns + rows."""

from __future__ import annotations

import re
import threading
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .errors import QueryError
from .records import format_ts, jsonable
from .sandbox import check_read_only, check_select, scope

_BATCH_ROWS = 2048
_EXPLAIN = re.compile(r"^\s*explain\s+(analy[sz]e\s+)?", re.IGNORECASE)


def _column(array: pa.ChunkedArray) -> list[Any]:
    t = array.type
    if pa.types.is_timestamp(t):
        factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[t.unit]
        ints = pc.cast(array, pa.int64()).to_pylist()
        return [None if v is None else format_ts(v * factor) for v in ints]
    values = array.to_pylist()
    if pa.types.is_map(t):
        return [None if v is None else {k: jsonable(x) for k, x in v} for v in values]
    return [jsonable(v) for v in values]


def run_sql(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    timeout: float,
    max_rows: int,
    readable: frozenset[str] | None = None,
) -> dict[str, Any]:
    """``{"columns": [...], "rows": [[...]]}``, plus ``"truncated": true`` when cut; interrupted
    after ``timeout`` seconds, streamed in batches and cut after ``max_rows`` rows.

    ``readable``: the tables the statement may read (:func:`query.sandbox.scope`); None reads
    every table of the store. Either way the statement passes :func:`sandbox.check_select`.
    """
    statement = check_read_only(sql)
    explain = _EXPLAIN.match(statement)
    inner = statement[explain.end() :] if explain else statement
    if readable is None:
        readable = scope(con, None)
    timer = threading.Timer(timeout, con.interrupt)
    timer.start()
    try:
        check_select(con, inner, readable)
        reader = con.execute(statement).to_arrow_reader(_BATCH_ROWS)
        batches: list[pa.RecordBatch] = []
        count = 0
        truncated = False
        for batch in reader:
            if count + batch.num_rows > max_rows:
                batches.append(batch.slice(0, max_rows - count))
                truncated = True
                break
            batches.append(batch)
            count += batch.num_rows
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException:
        raise QueryError(f"SQL query interrupted after {timeout:g}s (query.timeout)") from None
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {with_hint(str(exc).splitlines()[0])}") from None
    finally:
        timer.cancel()
    columns = [_column(table.column(i)) for i in range(table.num_columns)]
    result: dict[str, Any] = {
        "columns": list(table.column_names),
        "rows": [list(r) for r in zip(*columns, strict=True)],
    }
    if truncated:  # cut at query.max_rows
        result["truncated"] = True
    return result


def with_hint(message: str) -> str:
    """A DuckDB error ``message``, with the way out where users commonly get stuck: the tables'
    times are TIMESTAMP_NS in UTC, ``now()`` is a TIMESTAMP WITH TIME ZONE, and DuckDB will not
    compare the two."""
    if "TIMESTAMP_NS" in message and "TIMESTAMP WITH TIME ZONE" in message:
        return (
            f"{message} (the tables' times are TIMESTAMP_NS in UTC: compare them with"
            " timezone('UTC', now()) - INTERVAL 1 HOUR)"
        )
    return message
