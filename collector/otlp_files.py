"""OTLP files → export requests, for ``roomscope import`` (docs/export-import.md).

What a file holds is sniffed, not taken from its name:

* gzip (``1f 8b``) is inflated first, whatever it holds;
* ``{`` first: OTLP/JSON lines, one export request per line (the OpenTelemetry Collector's file
  exporter; ``roomscope session export --format otlp-json``); the signal is the line's
  ``resourceSpans``, ``resourceLogs`` or ``resourceMetrics``;
* ``PAR1`` first: a parquet file of SPEC 4's ``spans``, ``logs`` or ``metric_points`` columns
  (``--format parquet``; a directory stands for the files in it), rebuilt into requests by
  collector.otlp_build;
* anything else: protobuf export requests, each after a 4-byte big-endian length (the
  Collector's ``proto`` file format; ``--format otlp-proto``). The signal of a message is the
  request type that parses it with the fewest unknown bytes.

Each item is a :class:`Request` (a body for collector.decode.decode_body) or a :class:`Bad`
(where and why); a bad line is skipped, a broken length prefix ends its file.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .decode import SIGNALS
from .tagging import Tagger

MAX_MESSAGE = 256 * 1024 * 1024  # a length prefix above this is not one
PARQUET_CHUNK = 2000
_JSON_KEYS = {
    "resourceSpans": "traces",
    "resource_spans": "traces",
    "resourceLogs": "logs",
    "resource_logs": "logs",
    "resourceMetrics": "metrics",
    "resource_metrics": "metrics",
}


@dataclass(frozen=True)
class Request:
    signal: str  # traces, logs or metrics
    body: bytes
    encoding: str  # json or protobuf
    where: str  # file and line or message number
    offset: int  # bytes of the file read so far (progress)


@dataclass(frozen=True)
class Bad:
    where: str
    message: str
    offset: int


Item = Request | Bad


def files_of(paths: list[str]) -> list[Path]:
    """The files the arguments name (a directory: the files in it, sorted)."""
    out: list[Path] = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            out.extend(sorted(f for f in path.iterdir() if f.is_file()))
        else:
            out.append(path)
    return out


def read_file(path: Path, tagger: Tagger) -> Iterator[Item]:
    """Every export request of one file, in file order."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        yield Bad(str(path), f"cannot read: {exc.strerror or exc}", 0)
        return
    with raw:
        head = raw.read(4)
        raw.seek(0)
        if head[:2] == b"\x1f\x8b":
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw)
        elif head == b"PAR1":
            yield from _parquet(path, tagger, raw)
            return
        else:
            stream = raw
        try:
            first = _peek(stream)
            if first == b"{":
                yield from _json_lines(path, stream, raw)
            else:
                yield from _frames(path, stream, raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            yield Bad(str(path), f"cannot read: {exc}", raw.tell())


def _peek(stream: Any) -> bytes:
    """The first byte that is not whitespace, leaving the stream at the start."""
    start = stream.read(64)
    stream.seek(0)
    stripped = start.lstrip()
    return stripped[:1]


def _json_lines(path: Path, stream: IO[bytes], raw: IO[bytes]) -> Iterator[Item]:
    for number, line in enumerate(stream, 1):
        line = line.strip()
        where = f"{path}:{number}"
        if not line:
            continue
        try:
            doc = json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            yield Bad(where, f"invalid JSON: {exc}", raw.tell())
            continue
        found = {_JSON_KEYS[k] for k in doc if k in _JSON_KEYS} if isinstance(doc, dict) else set()
        if len(found) != 1:
            what = "more than one of" if found else "none of"
            yield Bad(
                where,
                f"not an OTLP export request: {what} resourceSpans, resourceLogs, resourceMetrics",
                raw.tell(),
            )
            continue
        yield Request(found.pop(), line, "json", where, raw.tell())


def _frames(path: Path, stream: IO[bytes], raw: IO[bytes]) -> Iterator[Item]:
    number = 0
    while True:
        prefix = stream.read(4)
        if not prefix:
            return
        number += 1
        where = f"{path}: message {number}"
        if len(prefix) < 4:
            yield Bad(where, "truncated length prefix at the end of the file", raw.tell())
            return
        (size,) = struct.unpack(">I", prefix)
        if size > MAX_MESSAGE:
            yield Bad(
                where,
                f"length prefix {size} is not plausible: not a length-prefixed OTLP protobuf"
                " file (or not an OTLP/JSON one), or corrupt here; the rest is skipped",
                raw.tell(),
            )
            return
        body = stream.read(size)
        if len(body) < size:
            yield Bad(where, f"truncated: {len(body)} of {size} bytes", raw.tell())
            return
        signal = sniff_signal(body)
        if signal is None:
            yield Bad(where, "not an OTLP traces, logs or metrics export request", raw.tell())
            continue
        yield Request(signal, body, "protobuf", where, raw.tell())


def sniff_signal(body: bytes) -> str | None:
    """The signal whose export request type parses ``body`` keeping the most of it."""
    best, kept = None, -1
    for signal, (request_type, *_rest) in SIGNALS.items():
        try:
            message = request_type.FromString(body)
        except Exception:
            continue
        message.DiscardUnknownFields()
        size = message.ByteSize()
        if size > kept:
            best, kept = signal, size
    if body and kept <= 0:
        return None
    return best


def _parquet(path: Path, tagger: Tagger, raw: IO[bytes]) -> Iterator[Item]:
    # pyarrow is imported here: only parquet files need it at import time
    import pyarrow.lib
    import pyarrow.parquet as pq

    from .otlp_build import build_request, plain_rows

    try:
        parquet = pq.ParquetFile(raw)
    except (pyarrow.lib.ArrowException, OSError) as exc:
        yield Bad(str(path), f"cannot read parquet: {exc}", 0)
        return
    names = set(parquet.schema_arrow.names)
    table = (
        "spans"
        if {"span_id", "kind"} <= names
        else "logs"
        if "severity_number" in names
        else "metric_points"
        if {"type", "temporality"} <= names
        else None
    )
    if table is None:
        yield Bad(str(path), "parquet file of no roomscope table (spans, logs, metric_points)", 0)
        return
    size, total, done = path.stat().st_size, max(1, parquet.metadata.num_rows), 0
    batches = parquet.iter_batches(PARQUET_CHUNK)
    while True:
        try:
            batch = next(batches, None)
        except (pyarrow.lib.ArrowException, OSError) as exc:
            yield Bad(f"{path}: after row {done}", f"cannot read parquet: {exc}", size)
            return
        if batch is None:
            return
        where = f"{path}: rows {done + 1}-{done + batch.num_rows}"
        done += batch.num_rows
        offset = size * done // total
        try:
            built = build_request(table, plain_rows(batch), tagger)
        except (KeyError, ValueError, TypeError) as exc:
            yield Bad(where, f"not {table} rows: {exc}", offset)
            continue
        yield Request(built.signal, built.request.SerializeToString(), "protobuf", where, offset)
