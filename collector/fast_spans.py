"""Serialized ExportTraceServiceRequest → the ``spans`` Arrow table via the C decoder.

``collector._otlpfast`` parses the protobuf wire format itself and fills Arrow buffers; this
module wraps them into the exact table :func:`collector.flatten_spans.flatten_spans` builds
(that flattener stays the reference and the fallback when the extension is not built).
"""

from __future__ import annotations

import pyarrow as pa

from .columns import (
    MAP_TYPE,
    TS_TYPE,
    Decoded,
    resource_rows,
    sparse_list,
    split_attributes,
    trace_index_rows,
)
from .errors import DecodeError
from .store import ARROW_SCHEMAS
from .tagging import Tagger

try:
    from . import _otlpfast
except ImportError:  # not compiled (no C compiler at install time)
    _otlpfast = None

AVAILABLE = _otlpfast is not None

SCHEMA = ARROW_SCHEMAS["spans"]
_EVENT_FIELDS = list(SCHEMA.field("events").type.value_type)
_LINK_FIELDS = list(SCHEMA.field("links").type.value_type)
_STR = pa.string()
_I32 = pa.int32()


def _fixed(buf: bytes, pa_type: pa.DataType, width: int) -> pa.Array:
    return pa.Array.from_buffers(pa_type, len(buf) // width, [None, pa.py_buffer(buf)])


def _str(col: tuple) -> pa.Array:
    offsets, data, validity, length, nulls = col
    return pa.Array.from_buffers(
        _STR,
        length,
        [
            None if validity is None else pa.py_buffer(validity),
            pa.py_buffer(offsets),
            pa.py_buffer(data),
        ],
        null_count=nulls,
    )


def _map(col: tuple) -> pa.Array:
    offsets, keys, values = col
    arr = pa.MapArray.from_arrays(_fixed(offsets, _I32, 4), _str(keys), _str(values))
    assert arr.type == MAP_TYPE
    return arr


def flatten_spans_bytes(body: bytes, tagger: Tagger, received_ns: int) -> Decoded:
    """A serialized ExportTraceServiceRequest → the same Decoded as parse + flatten_spans."""
    if _otlpfast is None:
        raise RuntimeError("collector._otlpfast is not built")
    if type(body) is not bytes:
        body = bytes(body)
    try:
        c, n, rejected, errors = _otlpfast.flatten_spans(
            body,
            tagger.project_keys,
            tagger.room_keys,
            tagger.session_keys,
            tagger.default_project,
            received_ns,
        )
    except ValueError as exc:
        raise DecodeError(f"invalid protobuf ExportTraceServiceRequest: {exc}") from None
    ctx = _fixed(c["ctx"], _I32, 4)
    keysets, attr_values, keyset_rows = split_attributes(_map(c["attributes"]))
    resource_ids, resources = resource_rows(_map(c["ctx.resource_attributes"]), ctx)
    events = sparse_list(
        _fixed(c["events.offsets"], _I32, 4),
        pa.StructArray.from_arrays(
            [
                _fixed(c["events.time"], TS_TYPE, 8),
                _str(c["events.name"]),
                _map(c["events.attributes"]),
                _fixed(c["events.dropped_attributes_count"], pa.uint32(), 4),
            ],
            fields=_EVENT_FIELDS,
        ),
    )
    links = sparse_list(
        _fixed(c["links.offsets"], _I32, 4),
        pa.StructArray.from_arrays(
            [
                _str(c["links.trace_id"]),
                _str(c["links.span_id"]),
                _str(c["links.trace_state"]),
                _map(c["links.attributes"]),
                _fixed(c["links.dropped_attributes_count"], pa.uint32(), 4),
                _fixed(c["links.flags"], pa.uint32(), 4),
            ],
            fields=_LINK_FIELDS,
        ),
    )
    columns = [
        _str(c["project"]),
        _str(c["room"]),
        _str(c["session_id"]),
        _str(c["trace_id"]),
        _str(c["span_id"]),
        _str(c["parent_span_id"]),
        _str(c["trace_state"]),
        _str(c["name"]),
        _str(c["kind"]),
        _str(c["ctx.service_name"]).take(ctx),
        _str(c["ctx.scope_name"]).take(ctx),
        _str(c["ctx.scope_version"]).take(ctx),
        _fixed(c["start_time"], TS_TYPE, 8),
        _fixed(c["duration_ns"], pa.int64(), 8),
        _str(c["status_code"]),
        _str(c["status_message"]),
        keysets,
        attr_values,
        resource_ids,
        events,
        links,
        _fixed(c["flags"], pa.uint32(), 4),
        _fixed(c["dropped_attributes_count"], pa.uint32(), 4),
        _fixed(c["dropped_events_count"], pa.uint32(), 4),
        _fixed(c["dropped_links_count"], pa.uint32(), 4),
        _str(c["ctx.scope_attributes"]).take(ctx),
        pa.repeat(pa.scalar(received_ns, TS_TYPE), n),
    ]
    table = pa.Table.from_arrays(columns, schema=SCHEMA)
    side = {
        "resources": resources,
        "attribute_keysets": keyset_rows,
        "trace_index": trace_index_rows(table),
    }
    return Decoded("spans", table, rejected, errors, side)
