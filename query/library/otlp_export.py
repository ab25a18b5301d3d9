"""A session's records as OTLP files or parquet, streamed in chunks (``roomscope session export``).

Formats (docs/export-import.md):

* ``otlp-json`` — OTLP/JSON lines, as the OpenTelemetry Collector's file exporter writes them:
  one ``ExportTraceServiceRequest``, ``ExportLogsServiceRequest`` or
  ``ExportMetricsServiceRequest`` per line (hex ids, enums as integers, lowerCamelCase names).
* ``otlp-proto`` — the same requests as protobuf, each after a 4-byte big-endian length.
* ``parquet`` — one parquet file per table (``spans``, ``logs``, ``metric_points``) with
  SPEC 4's columns of that table.

Rows are read ``CHUNK`` at a time (DuckDB's record batch reader over the query, no ORDER BY,
so nothing sorts or holds the whole session) and each chunk becomes one request (or one
parquet row group): memory is bounded by the chunk, whatever the session's size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa

from collector.tagging import Tagger

from .errors import QueryError

FORMATS = ("otlp-json", "otlp-proto", "parquet")
TABLES = ("spans", "logs", "metric_points")
CHUNK = 2000  # records per request line / frame / row group
MEDIA_TYPES = {
    "otlp-json": "application/x-ndjson",
    "otlp-proto": "application/octet-stream",
    "parquet": "application/vnd.apache.parquet",
}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise QueryError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def check_table(table: str) -> str:
    if table not in TABLES:
        raise QueryError(f"unknown table {table!r}: use one of {', '.join(TABLES)}")
    return table


def record_batches(
    con: duckdb.DuckDBPyConnection, session_id: str, table: str, chunk: int = CHUNK
) -> pa.RecordBatchReader:
    """The session's rows of SPEC 4's ``table`` (every column), ``chunk`` rows at a time."""
    check_table(table)
    try:
        result = con.execute(f"SELECT * FROM {table} WHERE session_id = ?", [session_id])
        return result.to_arrow_reader(chunk)
    except duckdb.Error as exc:
        raise QueryError(f"cannot read the session's {table}: {str(exc).splitlines()[0]}") from None


def otlp_requests(
    con: duckdb.DuckDBPyConnection, session_id: str, tagger: Tagger, chunk: int = CHUNK
) -> Iterator[tuple[str, Any]]:
    """(signal, export request) for every chunk of the session's spans, then logs, then metric
    points; each record tagged with its project, room and session (collector.otlp_build)."""
    # Imported here, as pyarrow.parquet below: the protobuf messages weigh ~10 MB in every
    # CLI process otherwise (this module is imported by the Reader).
    from collector.otlp_build import build_request, plain_rows

    for table in TABLES:
        for batch in record_batches(con, session_id, table, chunk):
            if batch.num_rows:
                built = build_request(table, plain_rows(batch), tagger)
                yield built.signal, built.request


def frame(signal: str, request: Any, fmt: str) -> bytes:
    """One request as a line of OTLP/JSON or a length-prefixed protobuf message."""
    if fmt == "otlp-json":
        from collector.otlp_json import to_otlp_json

        return to_otlp_json(request) + b"\n"
    body = request.SerializeToString()
    return struct.pack(">I", len(body)) + body


def export_otlp(
    con: duckdb.DuckDBPyConnection,
    session_id: str,
    fmt: str,
    tagger: Tagger,
    chunk: int = CHUNK,
) -> Iterator[bytes]:
    """The session as ``otlp-json`` lines or ``otlp-proto`` frames, a chunk at a time."""
    check_format(fmt)
    if fmt == "parquet":
        raise QueryError("parquet is one file per table: use export_parquet")
    for signal, request in otlp_requests(con, session_id, tagger, chunk):
        yield frame(signal, request, fmt)


class _Pieces:
    """A write-only file that hands out what was written since the last ``take``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False
        self.position = 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def export_parquet(
    con: duckdb.DuckDBPyConnection, session_id: str, table: str, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The session's rows of ``table`` as one parquet file, streamed a row group at a time
    (the file has the table's columns even when the session has no such rows)."""
    import pyarrow.parquet as pq

    batches = record_batches(con, session_id, table, chunk)
    sink = _Pieces()
    writer = pq.ParquetWriter(sink, batches.schema, compression="zstd")
    for batch in batches:
        if batch.num_rows:
            writer.write_batch(batch)
            yield sink.take()
    writer.close()  # the footer; a session without such rows gets a file of no rows
    yield sink.take()
