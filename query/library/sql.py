"""Read-only ad-hoc SQL over the tables: one statement, reads only, results as columns + rows."""

from __future__ import annotations

import re
import threading
from typing import Any

import duckdb
import pyarrow as pa

from .errors import QueryError
from .sandbox import check_read_only, check_select, scope
from .sql_rewrite import relation
from .values import arrow_values

_BATCH_ROWS = 2048
_EXPLAIN = re.compile(r"^\s*explain\s+(analy[sz]e\s+)?", re.IGNORECASE)


# Types Arrow cannot carry faithfully (BIT and BIGNUM arrive as raw bytes, UHUGEINT as a
# DECIMAL(38) too small for it, TIMETZ without its offset): such columns are read as DuckDB's
# text for them, and a column of whole numbers of them is written as numbers again.
_AS_TEXT = re.compile(r"\b(BIT|BIGNUM|VARINT|UHUGEINT|TIME WITH TIME ZONE)\b")
_WHOLE = {"BIGNUM", "VARINT", "UHUGEINT"}


def _readable(rel: duckdb.DuckDBPyRelation) -> tuple[duckdb.DuckDBPyRelation, set[int]]:
    """``rel`` with the columns of :data:`_AS_TEXT` types cast to VARCHAR (by position: the
    names of a result need not be unique), and the positions of those that hold integers."""
    types = [str(t) for t in rel.types]
    if not any(_AS_TEXT.search(t) for t in types):
        return rel, set()
    names = ['"' + c.replace('"', '""') + '"' for c in rel.columns]
    select = ", ".join(
        f"CAST(#{i} AS VARCHAR) AS {n}" if _AS_TEXT.search(t) else f"#{i} AS {n}"
        for i, (t, n) in enumerate(zip(types, names, strict=True), start=1)
    )
    return rel.project(select), {i for i, t in enumerate(types) if t in _WHOLE}


def run_sql(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    timeout: float,
    max_rows: int,
    readable: frozenset[str] | None = None,
) -> dict[str, Any]:
    """``{"columns": [...], "rows": [[...]]}``, plus ``"truncated": true`` when cut; interrupted
    after ``timeout`` seconds, streamed in batches and cut after ``max_rows`` rows.

    ``readable``: the tables the statement may read (:func:`.sandbox.scope`); None reads
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
        rel = relation(con, statement, inner, statement[: explain.end()] if explain else "")
        if rel is None:  # every statement check_read_only passes has a result
            raise QueryError("the statement returned no result")
        rel, whole = _readable(rel)
        reader = rel.to_arrow_reader(_BATCH_ROWS)
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
    except duckdb.OutOfMemoryException as exc:
        raise QueryError(
            "SQL query needs more memory than the store's budget (setting"
            f" store.memory_limit) and cannot spill to disk: {str(exc).splitlines()[0]}"
        ) from None
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {with_hint(str(exc).splitlines()[0])}") from None
    finally:
        timer.cancel()
    # Every value is data here: NaN and ±Infinity come out as "NaN", "Infinity", "-Infinity".
    columns = [arrow_values(table.column(i), data=True) for i in range(table.num_columns)]
    for i in whole:
        columns[i] = [None if v is None else int(v) for v in columns[i]]
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
