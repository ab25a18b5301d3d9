"""Small builders shared by the flatteners: map columns, timestamps, ids, the decoded batch."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import SchemaMismatch

MAP_TYPE = pa.map_(pa.string(), pa.string())
TS_TYPE = pa.timestamp("ns")
MAX_TS = (1 << 63) - 1  # TIMESTAMP_NS is a signed 64-bit count of nanoseconds


@dataclass
class Decoded:
    """One request's records as an Arrow table plus what was rejected and why."""

    signal: str  # "spans", "logs" or "metric_points"
    table: pa.Table
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    # rows the table refers to, stored once in their own table (spans: "resources")
    side: dict[str, pa.Table] = field(default_factory=dict)
    # the session tracker's summary of the table, when worked out where the request was decoded
    sessions: Any = None

    @property
    def accepted(self) -> int:
        return self.table.num_rows

    @property
    def nbytes(self) -> int:
        """The memory its tables hold (Arrow buffers)."""
        return self.table.nbytes + sum(t.nbytes for t in self.side.values())

    def reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < 5:
            self.errors.append(message)

    @property
    def error_message(self) -> str:
        if not self.rejected:
            return ""
        more = (
            ""
            if self.rejected <= len(self.errors)
            else f" (and {self.rejected - len(self.errors)} more)"
        )
        return "; ".join(self.errors) + more


class MapColumn:
    """Accumulates a MAP(VARCHAR, VARCHAR) column as keys/values/offsets lists."""

    __slots__ = ("keys", "offsets", "values")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[str | None] = []
        self.offsets: list[int] = [0]

    def add_dict(self, d: dict[str, str | None]) -> None:
        self.keys.extend(d.keys())
        self.values.extend(d.values())
        self.offsets.append(len(self.keys))

    def pop_row(self) -> None:
        """Undo the last row (a record rejected after its attributes were read)."""
        self.offsets.pop()
        end = self.offsets[-1]
        del self.keys[end:]
        del self.values[end:]

    def array(self) -> pa.Array:
        return pa.MapArray.from_arrays(
            pa.array(self.offsets, pa.int32()),
            pa.array(self.keys, pa.string()),
            pa.array(self.values, pa.string()),
        )


def by_name(columns: dict[str, Any], names: Sequence[str], what: str) -> list[Any]:
    """``columns`` (name → column) in the order of ``names``, the schema's; SchemaMismatch,
    naming them, when the schema has a column that is not there or there is one it has not."""
    if columns.keys() != set(names):
        missing = [n for n in names if n not in columns]
        extra = [n for n in columns if n not in names]
        raise SchemaMismatch(
            f"{what}: the schema (collector/store/schema.py) has columns that were not made:"
            f" {missing}; columns were made that the schema has not: {extra}"
        )
    return [columns[n] for n in names]


def table_by_name(columns: dict[str, pa.Array], schema: pa.Schema, what: str) -> pa.Table:
    """A flattener's columns as a table of ``schema``: each column found by its name, never
    by the place it was made in."""
    return pa.Table.from_arrays(by_name(columns, schema.names, what), schema=schema)


def struct_by_name(children: dict[str, pa.Array], struct: pa.StructType, what: str) -> pa.Array:
    """A struct column (a span's events, links) of its fields' arrays, found by name."""
    fields = list(struct)
    return pa.StructArray.from_arrays(
        by_name(children, [f.name for f in fields], what), fields=fields
    )


def map_array(rows: list[dict[str, str | None]]) -> pa.Array:
    col = MapColumn()
    for row in rows:
        col.add_dict(row)
    return col.array()


def check_ts(ns: int, what: str) -> int:
    """A uint64 nanosecond timestamp that must fit TIMESTAMP_NS."""
    if ns > MAX_TS:
        raise ValueError(f"{what} {ns} is beyond the year 2262")
    return ns


def id_hex(raw: bytes, size: int, what: str, required: bool) -> str | None:
    """Hex of a trace (16 bytes) or span (8 bytes) id; ValueError when it has the wrong size."""
    if not raw:
        if required:
            raise ValueError(f"{what} is empty")
        return None
    if len(raw) != size:
        raise ValueError(f"{what} has {len(raw)} bytes, expected {size}")
    if required and not any(raw):
        raise ValueError(f"{what} is all zeros")
    return raw.hex()


def _content_id(value: object) -> int:
    """A 64-bit id of a JSON-able value: the same value gets the same id in every process."""
    digest = hashlib.blake2b(json.dumps(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@functools.lru_cache(maxsize=4096)
def _resource_id(items: tuple[tuple[str, str | None], ...]) -> int:
    return _content_id(items)


def resource_id(attributes: dict[str, str | None] | None) -> int:
    """The id of a resource: a 64-bit hash of its attributes (whatever their order)."""
    return _resource_id(tuple(sorted((attributes or {}).items())))


def resource_rows(ctx_maps: pa.Array, ctx: pa.Array) -> tuple[pa.Array, pa.Table]:
    """Resource attributes per resource×scope context (``ctx_maps``) and each record's context
    index (``ctx``) → each record's resource id, and the ``resources`` rows (one per resource)."""
    ids: list[int] = []
    firsts: dict[int, int] = {}
    for i, pairs in enumerate(ctx_maps.to_pylist()):
        rid = _resource_id(tuple(sorted(pairs or ())))
        ids.append(rid)
        firsts.setdefault(rid, i)
    resources = pa.Table.from_arrays(
        [
            pa.array(list(firsts), pa.uint64()),
            ctx_maps.take(pa.array(list(firsts.values()), pa.int32())),
        ],
        names=["resource_id", "attributes"],
    )
    return pa.array(ids, pa.uint64()).take(ctx), resources


_SEP = "\x1f"


@functools.lru_cache(maxsize=4096)
def keyset_id(keys: tuple[str, ...]) -> int:
    """The id of a list of attribute keys (in their order)."""
    return _content_id(keys)


def split_attributes(attrs: pa.MapArray) -> tuple[pa.Array, pa.Array, pa.Table]:
    """A MAP column → (each row's keyset id, each row's values in key order, the
    ``attribute_keysets`` rows of the keysets it uses).

    Rows are grouped by their keys joined into one string (Arrow compute, no Python per row);
    when a key holds the separator or is empty, so that joining could confuse two lists, rows
    are grouped by their key lists in Python instead."""
    keys = pa.ListArray.from_arrays(attrs.offsets, attrs.keys)
    values = pa.ListArray.from_arrays(attrs.offsets, attrs.items)
    flat = attrs.keys
    if len(flat) and (
        pc.any(pc.equal(flat, "")).as_py() or pc.any(pc.match_substring(flat, _SEP)).as_py()
    ):
        lists = [tuple(k) for k in keys.to_pylist()]
        uniques = list(dict.fromkeys(lists))
        index = {k: i for i, k in enumerate(uniques)}
        codes = pa.array([index[k] for k in lists], pa.int32())
    else:
        enc = pc.binary_join(keys, _SEP).dictionary_encode()
        uniques = [tuple(j.split(_SEP)) if j else () for j in enc.dictionary.to_pylist()]
        codes = enc.indices
    ids = [keyset_id(k) for k in uniques]
    keysets = pa.Table.from_arrays(
        [pa.array(ids, pa.uint64()), pa.array([list(k) for k in uniques], pa.list_(pa.string()))],
        names=["keyset_id", "keys"],
    )
    return pa.array(ids, pa.uint64()).take(codes), values, keysets


_NIBBLE = np.zeros(256, np.uint64)
for _i, _c in enumerate("0123456789abcdef"):
    _NIBBLE[ord(_c)] = _NIBBLE[ord(_c.upper())] = _i
_SHIFTS = np.arange(60, -1, -4, dtype=np.uint64)


def trace_keys(ids: pa.Array) -> pa.Array:
    """The first 64 bits of each hex trace id (schema.TRACE_KEY): ``trace_index``'s key. NULL
    for a NULL id or one shorter than 16 characters (decoders only make 32-character ids)."""
    ids = ids.cast(pa.string())
    offsets = np.frombuffer(ids.buffers()[1], np.int32)[ids.offset : ids.offset + len(ids) + 1]
    raw = ids.buffers()[2]
    data = np.frombuffer(raw, np.uint8) if raw is not None else np.zeros(0, np.uint8)
    data = np.concatenate([data, np.zeros(16, np.uint8)])  # room for invalid ids' reads
    ok = (offsets[1:] - offsets[:-1]) >= 16
    if ids.null_count:
        ok &= ids.is_valid().to_numpy(zero_copy_only=False)
    positions = np.where(ok, offsets[:-1], 0)[:, None] + np.arange(16)
    keys = (_NIBBLE[data[positions]] << _SHIFTS).sum(axis=1, dtype=np.uint64)
    return pa.array(keys, pa.uint64(), mask=~ok)


def trace_index_rows(spans: pa.Table) -> pa.Table:
    """The ``trace_index`` rows of a batch of spans: each (trace, room)'s key and first and last
    start, a NULL room being a group of its own; spans without a trace id have none. Built by
    both span decoders in the receiving thread, so the single writer only appends them (~0.25 µs
    a span). Columns in trace_index's order (the writer appends by position)."""
    tid = spans["trace_id"].combine_chunks()
    room = spans["room"].combine_chunks()
    start = spans["start_time"].combine_chunks()
    if tid.null_count:
        keep = pc.is_valid(tid)
        tid, room, start = tid.filter(keep), room.filter(keep), start.filter(keep)
    tids = tid.dictionary_encode()
    rooms = room.dictionary_encode()  # a NULL room gets a NULL index: code len(dictionary)
    null_room = len(rooms.dictionary)
    room_codes = rooms.indices.fill_null(null_room).to_numpy().astype(np.int64)
    codes = tids.indices.to_numpy().astype(np.int64)
    if len(room_codes) and (room_codes != room_codes[0]).any():
        # one int64 key per (trace, room): trace code * (rooms + 1) + room code
        keys, codes = np.unique(codes * (null_room + 1) + room_codes, return_inverse=True)
        group_tid, group_room = np.divmod(keys, null_room + 1)
    else:  # one room (or none) in the batch, the usual case: the groups are the traces
        group_tid = np.arange(len(tids.dictionary))
        group_room = np.full(len(group_tid), room_codes[0] if len(room_codes) else null_room)
    times = start.cast(pa.int64()).to_numpy()
    first = np.full(len(group_tid), np.iinfo(np.int64).max)
    last = np.full(len(group_tid), np.iinfo(np.int64).min)
    np.minimum.at(first, codes, times)
    np.maximum.at(last, codes, times)
    room_index = pa.array(group_room, pa.int64(), mask=group_room == null_room)
    return pa.table(
        [
            trace_keys(tids.dictionary).take(pa.array(group_tid, pa.int64())),
            pa.array(first, TS_TYPE),
            pa.array(last, TS_TYPE),
            rooms.dictionary.take(room_index),
        ],
        names=["trace_key", "first_start", "last_start", "room"],
    )


def sparse_list(offsets: pa.Array, values: pa.Array) -> pa.ListArray:
    """A list column whose empty lists are NULL: DuckDB appends (and logs at commit) a NULL
    LIST(STRUCT) ~2 ms per 2,048 spans cheaper than an empty one, and most spans have no events
    or links. Readers see [] again (the spans view and the query library coalesce)."""
    off = offsets.to_numpy(zero_copy_only=False)
    empty = off[1:] == off[:-1]
    mask = pa.array(empty) if empty.any() else None
    return pa.ListArray.from_arrays(offsets, values, mask=mask)
