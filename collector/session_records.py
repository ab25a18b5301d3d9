"""Per-record facts for session tracking: each record's time and extent, whether it is an error,
and what a group of records adds to one session (:class:`Delta`), as numpy reductions.

:mod:`collector.session_infer` builds on these to cut batches into bursts and assign sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The timestamp a record is placed by, per signal table.
TIME_COLUMN = {"spans": "start_time", "logs": "time", "metric_points": "time"}
COUNT_FIELD = {"spans": "span_count", "logs": "log_count", "metric_points": "metric_point_count"}
ERROR_SEVERITY = 17  # SeverityNumber ERROR and above


def session_times(table: pa.Table, signal: str, max_skew_ns: int) -> np.ndarray:
    """Each record's time for session purposes (int64 ns).

    A record stamped more than ``max_skew_ns`` after it was received has a skewed clock; it is
    placed at its receive time instead (its stored timestamp is left as sent)."""
    received = to_numpy(table["received_at"]).view(np.int64)
    t = to_numpy(table[TIME_COLUMN[signal]]).view(np.int64)  # NULL: NaT, the smallest int64
    t = np.where(t == _NAT, received, t)
    return np.where(t > received + max_skew_ns, received, t)


_NAT = np.iinfo(np.int64).min


def session_ends(table: pa.Table, signal: str, times: np.ndarray, max_skew_ns: int) -> np.ndarray:
    """Each record's end for session purposes (int64 ns): a span's ``times + duration``, never
    before its start (a negative duration counts as 0) and never more than ``max_skew_ns`` past
    its receive time (the skew rule of :func:`session_times`, applied to the end); other
    signals' records are instants (``times`` itself)."""
    if signal != "spans":
        return times
    received = to_numpy(table["received_at"]).view(np.int64)
    duration = to_numpy(pc.fill_null(table["duration_ns"], 0)).astype(np.int64)
    room = np.maximum(received + max_skew_ns - times, 0)  # clipped first: no overflow
    return times + np.clip(duration, 0, room)


def to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An Arrow column as one numpy array (copied only when it has several chunks or NULLs)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def dictionary_codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list]:
    """Dictionary codes (int64, -1 for NULL) and the distinct values of a string column."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    encoded = col.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary.to_pylist()


def error_flags(table: pa.Table, signal: str) -> pa.Array:
    """1 for an error record (span status ERROR, log severity >= ERROR), else 0."""
    if signal == "spans":
        flag = pc.equal(table["status_code"], "ERROR")
    elif signal == "logs":
        flag = pc.greater_equal(table["severity_number"], ERROR_SEVERITY)
    else:
        return pa.nulls(table.num_rows, pa.int64()).fill_null(0)
    return pc.fill_null(flag, False).cast(pa.int64())


@dataclass
class Delta:
    """What some records add to one session."""

    project: str | None
    room: str | None
    first: int
    last: int
    counts: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    services: dict[str, int] = field(default_factory=dict)  # service → first time


def merge_delta(into: dict[str, Delta], key: str, d: Delta) -> None:
    """Add ``d`` to ``into[key]`` (a copy of it when the key is new)."""
    cur = into.get(key)
    if cur is None:
        into[key] = Delta(
            d.project, d.room, d.first, d.last, dict(d.counts), d.errors, dict(d.services)
        )
        return
    if d.first < cur.first:  # project and room as the session's earliest record has them
        cur.project, cur.room = d.project, d.room
    cur.first, cur.last = min(cur.first, d.first), max(cur.last, d.last)
    for f, n in d.counts.items():
        cur.counts[f] = cur.counts.get(f, 0) + n
    cur.errors += d.errors
    for name, t in d.services.items():
        cur.services[name] = min(cur.services.get(name, t), t)


def group_deltas(
    table: pa.Table,
    signal: str,
    times: np.ndarray,
    codes: np.ndarray,
    keys: Sequence[Any],
    ends: np.ndarray | None = None,
) -> dict[Any, Delta]:
    """Per group of rows (``codes``: index into ``keys``, -1 for none): first time, last end
    (``ends``, default ``times``), record and error counts, services. Numpy reductions over the
    codes (sorted once), not loops over records; project and room are those of each group's
    earliest row."""
    out: dict[Any, Delta] = {}
    keep = codes >= 0
    if not keep.any():
        return out
    ends = times if ends is None else ends
    c, t = codes[keep], times[keep]
    err = to_numpy(error_flags(table, signal))[keep]
    order = np.lexsort((t, c))
    sc, st = c[order], t[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    stops = np.r_[starts[1:], len(sc)]
    rows = pa.array(np.flatnonzero(keep)[order[starts]])  # each group's first row (by time)
    projects = table["project"].take(rows).to_pylist()
    rooms = table["room"].take(rows).to_pylist()
    n_err = np.add.reduceat(err[order], starts).tolist()
    firsts = st[starts].tolist()
    lasts = np.maximum.reduceat(ends[keep][order], starts).tolist()
    count_field = COUNT_FIELD[signal]
    for i, code in enumerate(sc[starts].tolist()):
        count = {count_field: int(stops[i] - starts[i])}
        out[keys[code]] = Delta(projects[i], rooms[i], firsts[i], lasts[i], count, int(n_err[i]))
    svc_codes, services = dictionary_codes(table["service_name"])
    svc_codes = svc_codes[keep][order]
    has = svc_codes >= 0
    if has.any():
        pair = sc[has] * (len(services) + 1) + svc_codes[has]
        _, first = np.unique(pair, return_index=True)  # rows are in time order per group
        for code, svc, t_first in zip(
            sc[has][first].tolist(),
            svc_codes[has][first].tolist(),
            st[has][first].tolist(),
            strict=True,
        ):
            out[keys[code]].services[services[svc]] = t_first
    return out
