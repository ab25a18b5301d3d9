"""Serialized ExportTraceServiceRequest → the ``spans`` Arrow table via the C decoder.

``collector._otlpfast`` parses the protobuf wire format itself and fills Arrow buffers; this
module wraps them into the exact table :func:`collector.flatten_spans.flatten_spans` builds
(that flattener stays the reference and the fallback when the extension is not built).

Columns go by name, never by position (the rule at the top of ``_otlpfast.c``): the C side
returns its buffers keyed by name and lists those names in ``_otlpfast.COLUMNS``; which buffer
makes which column is worked out here once, at import, from the schema's one definition
(collector/store/schema.py), and the import fails if the two do not agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pyarrow as pa

from .columns import (
    MAP_TYPE,
    Decoded,
    resource_rows,
    sparse_list,
    split_attributes,
    struct_by_name,
    table_by_name,
    trace_index_rows,
)
from .errors import DecodeError, SchemaMismatch
from .store import ARROW_SCHEMAS
from .tagging import Tagger

try:
    from . import _otlpfast
except ImportError:  # not compiled (no C compiler at install time)
    _otlpfast = None

AVAILABLE = _otlpfast is not None

SCHEMA = ARROW_SCHEMAS["spans"]
_STR = pa.string()
_I32 = pa.int32()

# The span columns made here, of the buffers below or (received_at) of nothing. The C decoder
# returns every other column under its own name (one value per span) or as ``ctx.<name>`` (one
# value per resource × scope context, spread to the spans by the ``ctx`` index).
MADE_IN_PYTHON = frozenset(
    {"attribute_keyset", "attribute_values", "resource_id", "events", "links", "received_at"}
)
# The C decoder's buffers that are not a column or a struct field (``events.<field>``,
# ``links.<field>``): what the columns above are made of.
_INPUTS = {
    "ctx": "fixed",
    "attributes": "map",
    "ctx.resource_attributes": "map",
    "events.offsets": "fixed",
    "links.offsets": "fixed",
}

Read = Callable[[Any], pa.Array]
Plan = list[tuple[str, str, Read]]  # (column or field name, C buffer name, reader)


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


def _structure(pa_type: pa.DataType) -> str:
    """How the C decoder hands over a column of this type (_otlpfast.c's structures)."""
    if pa.types.is_string(pa_type):
        return "string"
    if pa.types.is_map(pa_type):
        return "map"
    return "fixed"


def _reader(pa_type: pa.DataType) -> Read:
    kind = _structure(pa_type)
    if kind == "string":
        return _str
    if kind == "map":
        return _map
    return partial(_fixed, pa_type=pa_type, width=pa_type.bit_width // 8)


def plan(c_columns: Mapping[str, str], schema: pa.Schema = SCHEMA) -> tuple[Plan, Plan, dict]:
    """Which C buffer makes which column of ``schema``: (per-span columns, per-context columns,
    {"events"/"links": their fields}). ``c_columns`` is what the C decoder returns (name →
    structure); SchemaMismatch unless it is exactly what the schema needs."""
    wanted = dict(_INPUTS)
    per_span: Plan = []
    per_context: Plan = []
    structs: dict[str, Plan] = {}
    absent: list[str] = []  # columns the C decoder returns neither as <name> nor ctx.<name>
    for f in schema:
        if f.name in MADE_IN_PYTHON:
            if f.name in ("events", "links"):
                fields = structs[f.name] = []
                for child in f.type.value_type:
                    key = f"{f.name}.{child.name}"
                    wanted[key] = _structure(child.type)
                    fields.append((child.name, key, _reader(child.type)))
            continue
        if f.name in c_columns:
            key, into = f.name, per_span
        elif f"ctx.{f.name}" in c_columns:
            key, into = f"ctx.{f.name}", per_context
        else:
            absent.append(f.name)
            continue
        wanted[key] = _structure(f.type)
        into.append((f.name, key, _reader(f.type)))
    if absent or dict(c_columns) != wanted:
        missing = absent + sorted(k for k in wanted if k not in c_columns)
        extra = sorted(k for k in c_columns if k not in wanted)
        other = sorted(k for k in wanted if k in c_columns and c_columns[k] != wanted[k])
        raise SchemaMismatch(
            "collector._otlpfast does not return the span columns of collector/store/schema.py"
            f" (see the rule at the top of _otlpfast.c): missing {missing}, not in the schema"
            f" {extra}, of another structure {other}; rebuild the extension if it is stale"
        )
    return per_span, per_context, structs


if _otlpfast is not None:
    _PER_SPAN, _PER_CONTEXT, _STRUCTS = plan(_otlpfast.COLUMNS)
_STRUCT_TYPES = {name: SCHEMA.field(name).type.value_type for name in ("events", "links")}
_RECEIVED_TYPE = SCHEMA.field("received_at").type


def _struct(c: dict, name: str) -> pa.Array:
    """The events or links column: a list of structs, each field by its name."""
    children = {field: read(c[key]) for field, key, read in _STRUCTS[name]}
    values = struct_by_name(children, _STRUCT_TYPES[name], f"span {name}")
    return sparse_list(_fixed(c[f"{name}.offsets"], _I32, 4), values)


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
    columns = {name: read(c[key]) for name, key, read in _PER_SPAN}
    for name, key, read in _PER_CONTEXT:
        columns[name] = read(c[key]).take(ctx)
    keysets, columns["attribute_values"], keyset_rows = split_attributes(_map(c["attributes"]))
    columns["attribute_keyset"] = keysets
    columns["resource_id"], resources = resource_rows(_map(c["ctx.resource_attributes"]), ctx)
    columns["events"] = _struct(c, "events")
    columns["links"] = _struct(c, "links")
    columns["received_at"] = pa.repeat(pa.scalar(received_ns, _RECEIVED_TYPE), n)
    table = table_by_name(columns, SCHEMA, "fast_spans")
    side = {
        "resources": resources,
        "attribute_keysets": keyset_rows,
        "trace_index": trace_index_rows(table),
    }
    return Decoded("spans", table, rejected, errors, side)
