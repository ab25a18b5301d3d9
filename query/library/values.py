"""DuckDB values → JSON values, column by column over Arrow (SPEC 8: always valid JSON).

Every type a query can return comes out as something ``json.dumps(..., allow_nan=False)``
accepts: timestamps (also inside lists, structs and maps) as RFC 3339 UTC text with nanoseconds,
dates and times as ISO text, intervals as ISO 8601 durations (``P1M2DT3.5S``), whole decimals
(HUGEINT) as integers, other decimals as numbers, BLOBs as base64, maps as objects.

NaN and ±Infinity are not JSON numbers: where they are data (metric values, SQL results) they
are written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (as OTLP/JSON and
protobuf's JSON mapping do); elsewhere in records as ``null``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The range of epoch nanoseconds a datetime can show; DuckDB's infinite timestamps lie outside.
_MIN_NS, _MAX_NS = -62135596800 * 10**9, 253402300799 * 10**9


def float_text(value: float) -> str:
    """``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` for a float that is not finite."""
    return NONFINITE[repr(value).lower()]


def format_ts(ns: int | None) -> str | None:
    """Epoch nanoseconds → ``2026-11-24T16:20:00.123456789Z`` (DuckDB's ±infinity and other
    values beyond years 1..9999 → ``"infinity"``/``"-infinity"``)."""
    if ns is None:
        return None
    ns = int(ns)
    if not _MIN_NS <= ns <= _MAX_NS:
        return "infinity" if ns > 0 else "-infinity"
    seconds, frac = divmod(ns, 1_000_000_000)
    base = _EPOCH + dt.timedelta(seconds=seconds)
    return f"{base:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def parse_ts(text: str) -> int:
    """The inverse of :func:`format_ts` (RFC 3339 UTC text → epoch ns)."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    seconds = int((base - _EPOCH).total_seconds())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def iso_duration(months: int, days: int, ns: int) -> str:
    """An interval as ISO 8601: ``P1M2DT3.5S``, ``PT0S`` for zero; each part keeps its sign."""
    date = (f"{months}M" if months else "") + (f"{days}D" if days else "")
    seconds = ""
    if ns:
        whole, frac = divmod(abs(ns), 1_000_000_000)
        sign = "-" if ns < 0 else ""
        seconds = f"T{sign}{whole}" + (f".{frac:09d}".rstrip("0") if frac else "") + "S"
    return "P" + (date + seconds or "T0S")


def jsonable(value: Any, data: bool = False) -> Any:
    """One Python value (as DuckDB or Arrow hand it over) → JSON-ready. ``data``: write
    non-finite floats as strings (else ``None``)."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return float_text(value) if data else None
    if isinstance(value, dict):
        return {str(k): jsonable(v, data) for k, v in value.items()}
    if isinstance(value, pa.MonthDayNano):  # a tuple: before lists
        return iso_duration(value.months, value.days, value.nanoseconds)
    if isinstance(value, list | tuple):
        return [jsonable(v, data) for v in value]
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):  # whole (HUGEINT) → int, else a number
        return int(value) if value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _nested(array: pa.Array, offsets: list[int], child: list[Any]) -> list[Any]:
    valid = array.is_valid().to_pylist()
    return [child[offsets[i] : offsets[i + 1]] if ok else None for i, ok in enumerate(valid)]


def arrow_values(array: pa.Array | pa.ChunkedArray, data: bool = False) -> list[Any]:
    """An Arrow column → its values, JSON-ready (see the module's doc). ``data``: non-finite
    floats as strings (else ``None``)."""
    if isinstance(array, pa.ChunkedArray):
        return [v for chunk in array.chunks for v in arrow_values(chunk, data)]
    t = array.type
    if pa.types.is_null(t):
        return [None] * len(array)
    if pa.types.is_timestamp(t):  # timezone-aware or not, the stored value is UTC
        factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[t.unit]
        ints = pc.cast(array, pa.int64()).to_pylist()
        return [None if v is None else format_ts(v * factor) for v in ints]
    if pa.types.is_date32(t):
        days = array.view(pa.int32()).to_pylist()
        return [None if d is None else _date(d) for d in days]
    if pa.types.is_time(t):
        factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[t.unit]
        ints = array.view(pa.int64() if t.bit_width == 64 else pa.int32()).to_pylist()
        return [None if v is None else _time(v * factor) for v in ints]
    if pa.types.is_dictionary(t):
        return arrow_values(array.dictionary_decode(), data)
    if pa.types.is_map(t):  # a list of key/value structs
        keys, items = (arrow_values(c, data) for c in array.values.flatten())
        if not (pa.types.is_string(t.key_type) or pa.types.is_large_string(t.key_type)):
            keys = [str(k) for k in keys]
        pairs = _nested(array, array.offsets.to_pylist(), list(zip(keys, items, strict=True)))
        return [None if p is None else dict(p) for p in pairs]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _nested(array, array.offsets.to_pylist(), arrow_values(array.values, data))
    if pa.types.is_fixed_size_list(t):
        size = t.list_size
        offsets = [(array.offset + i) * size for i in range(len(array) + 1)]
        return _nested(array, offsets, arrow_values(array.values, data))
    if pa.types.is_struct(t):
        children = [arrow_values(c, data) for c in array.flatten()]
        names = [f.name for f in t]
        valid = array.is_valid().to_pylist()
        if len(set(names)) < len(names):  # row(1, 2): unnamed fields, a JSON object would drop
            return [[c[i] for c in children] if ok else None for i, ok in enumerate(valid)]
        return [
            dict(zip(names, [c[i] for c in children], strict=True)) if ok else None
            for i, ok in enumerate(valid)
        ]
    convert = _scalar(t, data)
    values = array.to_pylist()
    return values if convert is None else [None if v is None else convert(v) for v in values]


def _date(days: int) -> str:
    try:
        return (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()
    except OverflowError:  # DATE 'infinity'
        return "infinity" if days > 0 else "-infinity"


def _time(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + (f".{frac:09d}".rstrip("0") if frac else "")


def _scalar(t: pa.DataType, data: bool) -> Callable[[Any], Any] | None:
    """How to turn a ``to_pylist`` value of a non-nested type into JSON; None: as it is."""
    if pa.types.is_floating(t):
        return lambda v: v if math.isfinite(v) else (float_text(v) if data else None)
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_string(t):
        return None
    if pa.types.is_large_string(t):
        return None
    if pa.types.is_decimal(t):
        return int if t.scale == 0 else float
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return lambda v: base64.b64encode(v).decode()
    return lambda v: jsonable(v, data)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_text(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity (not JSON): the values above are
    JSON-ready already; a non-finite float that slipped through anyway becomes ``null``."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, **kwargs)
