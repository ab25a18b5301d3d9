"""OTLP AnyValue → the text stored in attribute maps and log bodies (SPEC 4).

Strings as-is, numbers and booleans in canonical form, arrays and maps as JSON, bytes as base64.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from .errors import DecodeError

MAX_DEPTH = 128  # nesting of arrays/kvlists we turn into JSON; deeper values are rejected


def float_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


def native(v: Any, depth: int = 0) -> Any:
    """An AnyValue as a JSON-able Python value."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"attribute value nested deeper than {MAX_DEPTH} levels")
    w = v.WhichOneof("value")
    if w == "string_value":
        return v.string_value
    if w == "int_value":
        return v.int_value
    if w == "bool_value":
        return v.bool_value
    if w == "double_value":
        d = v.double_value
        return d if math.isfinite(d) else float_text(d)
    if w == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if w == "array_value":
        return [native(x, depth + 1) for x in v.array_value.values]
    if w == "kvlist_value":
        return {kv.key: native(kv.value, depth + 1) for kv in v.kvlist_value.values}
    return None


def value_text(v: Any) -> str | None:
    """An AnyValue as attribute text; None for an empty value."""
    w = v.WhichOneof("value")
    if w == "string_value":
        return v.string_value
    if w == "int_value":
        return str(v.int_value)
    if w == "bool_value":
        return "true" if v.bool_value else "false"
    if w == "double_value":
        return float_text(v.double_value)
    if w == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if w is None:
        return None
    return json.dumps(native(v), separators=(",", ":"), ensure_ascii=False)


def body_text(v: Any) -> str | None:
    """A log body: a string body as-is, any other body as JSON."""
    w = v.WhichOneof("value")
    if w == "string_value":
        return v.string_value
    if w is None:
        return None
    return json.dumps(native(v), separators=(",", ":"), ensure_ascii=False)


def attr_dict(kvs: Any) -> dict[str, str | None]:
    """A repeated KeyValue as a dict of texts (later duplicates win, as in the SDKs)."""
    return {kv.key: value_text(kv.value) for kv in kvs}


def json_attrs(kvs: Any) -> str | None:
    """A repeated KeyValue as a JSON object of texts, or None when empty (scope attributes)."""
    if not kvs:
        return None
    return json.dumps(attr_dict(kvs), separators=(",", ":"), ensure_ascii=False)
