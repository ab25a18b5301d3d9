"""Spans in the decoders' layout → ExportTraceServiceRequest bytes, written as protobuf wire
format directly: the forwarder's path for the busiest signal.

collector.otlp_build makes a protobuf message per span (~60 µs a span on a busy machine,
~30 field calls each), more than ingesting the span costs. Here each span is one bytes join
of pre-encoded fields: attributes are encoded once per (key, stored text) and reused, ids once
per span. Spans with events or links (rare) are built by otlp_build and serialized. The
result parses to the same message otlp_build builds (tests/test_forwarding.py checks it).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .flatten_spans import KINDS, STATUS
from .otlp_build import _span, any_value, plain_rows

_MAX_CACHED = 65536
_Q = struct.Struct("<Q")
_I = struct.Struct("<I")


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]
_TAG = [bytes((i,)) for i in range(0x80)]


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag``: field number and wire type, one byte)."""
    n = len(payload)
    return _TAG[tag] + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _text(tag: int, text: str | None) -> bytes:
    return _field(tag, text.encode()) if text else b""


def _uint(tag: bytes, n: int | None) -> bytes:
    return tag + _varint(n) if n else b""


# Stored text that can only be a string value (not a number, bool, array or map).
_MAYBE_TYPED = frozenset("0123456789-NI[{tf")


def _any_value(text: str) -> bytes:
    """AnyValue bytes of stored attribute text (collector.otlp_build.any_value's typing)."""
    if text[:1] not in _MAYBE_TYPED:
        return _field(0x0A, text.encode())
    value = AnyValue()
    any_value(text, value)
    return value.SerializeToString()


class _KeyValues:
    """KeyValue fields per (field tag, key, stored text), each encoded once."""

    def __init__(self) -> None:
        self._cache: dict[int, dict[tuple[str, str | None], bytes]] = {}

    def encode(self, tag: int, pairs: Iterable[tuple[str, str | None]]) -> bytes:
        out = []
        cache = self._cache.setdefault(tag, {})
        for pair in pairs:
            kv = cache.get(pair)
            if kv is None:
                key, text = pair
                body = _text(0x0A, key)
                if text is not None:
                    body += _field(0x12, _any_value(text))
                kv = _field(tag, body)
                if len(cache) < _MAX_CACHED:
                    cache[pair] = kv
            out.append(kv)
        return b"".join(out)


def _scope(name: str | None, version: str | None, attrs: str | None, kvs: _KeyValues) -> bytes:
    body = _text(0x0A, name) + _text(0x12, version)
    if attrs:
        body += kvs.encode(0x1A, json.loads(attrs).items())
    return _field(0x0A, body)


def encode_spans(
    table: pa.Table,
    resources: dict[int, tuple],
    keysets: dict[int, Sequence[str]],
    tag_keys: tuple[str, str, str],
) -> bytes:
    """The spans of ``table`` (span_data's layout) as one request: grouped by resource (with
    the span's project, room and session under ``tag_keys``, replacing same-named resource
    attributes) and scope, in the table's order within each group."""
    cols = {name: table.column(name) for name in table.column_names}
    start = cols["start_time"].cast(pa.int64()).to_pylist()
    get = {name: cols[name].to_pylist() for name in _PLAIN}
    has_nested = [
        bool(e) or bool(ln)
        for e, ln in zip(cols["events"].to_pylist(), cols["links"].to_pylist(), strict=True)
    ]
    kvs = _KeyValues()
    groups: dict[tuple, list[bytes]] = {}
    nested_rows: list[dict[str, Any]] | None = None
    for i in range(table.num_rows):
        tags = (get["project"][i], get["room"][i], get["session_id"][i])
        rkey = (get["resource_id"][i], tags)
        skey = (rkey, get["scope_name"][i], get["scope_version"][i], get["scope_attributes"][i])
        keys = keysets.get(get["attribute_keyset"][i], ())
        pairs = zip(keys, get["attribute_values"][i] or (), strict=False)
        if has_nested[i]:
            if nested_rows is None:
                nested_rows = plain_rows(table)
            row = dict(nested_rows[i], attributes=list(pairs))
            message = Span()
            _span(row, message, {})
            span = _field(0x12, message.SerializeToString())
        else:
            span = _field(0x12, _span_bytes(get, i, start[i], pairs, kvs))
        groups.setdefault(skey, []).append(span)
    by_resource: dict[tuple, list[bytes]] = {}
    for (rkey, name, version, attrs), spans in groups.items():
        scope_spans = _scope(name, version, attrs, kvs) + b"".join(spans)
        by_resource.setdefault(rkey, []).append(_field(0x12, scope_spans))
    out = []
    for (resource_id, tags), scopes in by_resource.items():
        own = [p for p in resources.get(resource_id, ()) if p[0] not in tag_keys]
        own += [(k, v) for k, v in zip(tag_keys, tags, strict=True) if v]
        resource = _field(0x0A, kvs.encode(0x0A, own))
        out.append(_field(0x0A, resource + b"".join(scopes)))
    return b"".join(out)


_PLAIN = (
    "project", "room", "session_id", "trace_id", "span_id", "parent_span_id", "trace_state",
    "name", "kind", "duration_ns", "attribute_keyset", "attribute_values", "status_code",
    "status_message", "flags", "dropped_attributes_count", "dropped_events_count",
    "dropped_links_count", "resource_id", "scope_name", "scope_version", "scope_attributes",
)  # fmt: skip


def _code(names: Sequence[str], text: str | None) -> int:
    if not text:
        return 0
    return names.index(text) if text in names else int(text)


def _span_bytes(
    get: dict[str, list], i: int, start: int, pairs: Iterable, kvs: _KeyValues
) -> bytes:
    parts = [
        _id(0x0A, get["trace_id"][i]),
        _id(0x12, get["span_id"][i]),
        _text(0x1A, get["trace_state"][i]),
        _id(0x22, get["parent_span_id"][i]),
        _text(0x2A, get["name"][i]),
        _uint(b"\x30", _code(KINDS, get["kind"][i])),
        b"\x39" + _Q.pack(start),
        b"\x41" + _Q.pack(start + get["duration_ns"][i]),
        kvs.encode(0x4A, pairs),
        _uint(b"\x50", get["dropped_attributes_count"][i]),
        _uint(b"\x60", get["dropped_events_count"][i]),
        _uint(b"\x70", get["dropped_links_count"][i]),
    ]
    status = _text(0x12, get["status_message"][i]) + _uint(
        b"\x18", _code(STATUS, get["status_code"][i])
    )
    parts.append(_field(0x7A, status))  # present even when empty, as otlp_build sets it
    flags = get["flags"][i]
    if flags:
        parts.append(b"\x85\x01" + _I.pack(flags))
    return b"".join(parts)


def _id(tag: int, hex_id: str | None) -> bytes:
    return _field(tag, bytes.fromhex(hex_id)) if hex_id else b""
