"""The vectorized half of session tracking: record times, inference of session ids, per-batch sums.

Nothing here loops over records in Python: times and keys are numpy/Arrow columns, rows are sorted
by (project, room, time) once and cut into *bursts* (runs of one room with no gap above ``idle``).
Only bursts and sessions are visited one by one, and a batch holds few of either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The timestamp a record is placed by, per signal table.
TIME_COLUMN = {"spans": "start_time", "logs": "time", "metric_points": "time"}
COUNT_FIELD = {"spans": "span_count", "logs": "log_count", "metric_points": "metric_point_count"}
ERROR_SEVERITY = 17  # SeverityNumber ERROR and above

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_session_id(time_ns: int) -> str:
    """A ULID: 48 bits of milliseconds since the epoch, then 80 random bits, in Crockford base32.

    Ids sort by the time of the session's first record (to the millisecond)."""
    ms = max(time_ns, 0) // 1_000_000 & ((1 << 48) - 1)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def session_times(table: pa.Table, signal: str, max_skew_ns: int) -> np.ndarray:
    """Each record's time for session purposes (int64 ns).

    A record stamped more than ``max_skew_ns`` after it was received has a skewed clock; it is
    placed at its receive time instead (its stored timestamp is left as sent)."""
    received = table["received_at"].cast(pa.int64())
    t = pc.fill_null(table[TIME_COLUMN[signal]].cast(pa.int64()), received)
    t_np = _np(t)
    r_np = _np(received)
    return np.where(t_np > r_np + max_skew_ns, r_np, t_np)


def _np(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def _codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list]:
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
class Window:
    """A session's time span during inference: [start, last], joined while start-idle..last+idle."""

    session_id: str
    start: int
    last: int


@dataclass
class Inference:
    ids: list[str] = field(default_factory=list)  # session ids, indexed by the codes below
    new: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # new id → (project, room)
    codes: list[np.ndarray] = field(default_factory=list)  # per table: index into ids, -1 none


def infer(
    projects: Sequence[pa.Array],
    rooms: Sequence[pa.Array],
    times: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    windows_of: Callable[[str | None, str], list[Window]],
    idle_ns: int,
) -> Inference:
    """Assign each masked row of each table to an inferred session of its (project, room).

    ``projects[i]`` and ``rooms[i]`` hold the masked rows of table i; ``windows_of(project,
    room)`` gives the room's known sessions. A burst joins the sessions whose window it touches
    (the nearest one per record when it touches several); a burst touching none starts a new one.
    """
    result = Inference()
    sizes = [len(m) for m in masks]
    cand_t = [t[m] for t, m in zip(times, masks, strict=True)]
    n = sum(len(c) for c in cand_t)
    if n == 0:
        result.codes = [np.full(size, -1, np.int64) for size in sizes]
        return result
    p_codes, p_names = _codes(pa.chunked_array(projects, pa.string()))
    r_codes, r_names = _codes(pa.chunked_array(rooms, pa.string()))
    n_rooms = len(r_names) + 1
    key_codes = (p_codes + 1) * n_rooms + (r_codes + 1)  # NULL project → code -1 → 0

    def key_name(key: int) -> tuple[str | None, str]:
        p, r = divmod(key, n_rooms)
        return (p_names[p - 1] if p else None), r_names[r - 1]

    t_all = np.concatenate(cand_t)
    order = np.lexsort((t_all, key_codes))
    sk, st = key_codes[order], t_all[order]
    cut = np.empty(n, bool)
    cut[0] = True
    cut[1:] = (sk[1:] != sk[:-1]) | (np.diff(st) > idle_ns)
    starts = np.flatnonzero(cut)
    ends = np.append(starts[1:], n)
    assigned = np.empty(n, np.int64)
    code_of: dict[str, int] = {}
    room_windows: dict[int, list[Window]] = {}
    for b, e in zip(starts.tolist(), ends.tolist(), strict=True):
        key = int(sk[b])
        project, room = key_name(key)
        if key not in room_windows:
            room_windows[key] = [
                Window(w.session_id, w.start, w.last) for w in windows_of(project, room)
            ]
        windows = room_windows[key]
        tmin, tmax = int(st[b]), int(st[e - 1])
        hits = [w for w in windows if w.start - idle_ns <= tmax and w.last + idle_ns >= tmin]
        if not hits:
            sid = new_session_id(tmin)
            result.new[sid] = (project, room)
            hits = [Window(sid, tmin, tmax)]
            windows.append(hits[0])
        for w in hits:
            if w.session_id not in code_of:
                code_of[w.session_id] = len(result.ids)
                result.ids.append(w.session_id)
        if len(hits) == 1:
            w = hits[0]
            assigned[b:e] = code_of[w.session_id]
            w.start, w.last = min(w.start, tmin), max(w.last, tmax)
            continue
        seg = st[b:e]
        s = np.array([w.start for w in hits], np.int64)
        last = np.array([w.last for w in hits], np.int64)
        dist = np.maximum(np.maximum(s[None, :] - seg[:, None], 0), seg[:, None] - last[None, :])
        pick = dist.argmin(axis=1)
        codes = np.array([code_of[w.session_id] for w in hits], np.int64)
        assigned[b:e] = codes[pick]
        for j, w in enumerate(hits):
            mine = seg[pick == j]
            if len(mine):
                w.start, w.last = min(w.start, int(mine.min())), max(w.last, int(mine.max()))
    unsorted = np.empty(n, np.int64)
    unsorted[order] = assigned
    offset = 0
    for size, m in zip(sizes, masks, strict=True):
        full = np.full(size, -1, np.int64)
        k = int(m.sum())
        full[m] = unsorted[offset : offset + k]
        offset += k
        result.codes.append(full)
    return result


def fill_session_ids(table: pa.Table, codes: np.ndarray, ids: pa.Array) -> pa.Table:
    """``table`` with session_id set from ``codes`` (indexes into ``ids``) where it was NULL."""
    if not (codes >= 0).any():
        return table
    taken = ids.take(pa.array(codes, pa.int64(), mask=codes < 0))
    col = table.schema.get_field_index("session_id")
    return table.set_column(col, "session_id", pc.coalesce(table["session_id"], taken))


@dataclass
class Delta:
    """What one batch adds to one session."""

    project: str | None
    room: str | None
    first: int
    last: int
    counts: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    services: dict[str, int] = field(default_factory=dict)  # service → first time in the batch


def batch_deltas(tagged: Mapping[str, tuple[pa.Table, np.ndarray]]) -> dict[str, Delta]:
    """Per session id: first/last time, record and error counts, services.

    Session ids and service names are dictionary-encoded in Arrow; the sums, minima and maxima
    per session are numpy reductions over the codes (sorted once), not loops over records."""
    deltas: dict[str, Delta] = {}
    for signal, (table, times) in tagged.items():
        sid_codes, sids = _codes(table["session_id"])
        keep = sid_codes >= 0
        if not keep.any():
            continue
        sid_codes, t = sid_codes[keep], times[keep]
        err = _np(error_flags(table, signal))[keep]
        order = np.lexsort((t, sid_codes))
        sc, st = sid_codes[order], t[order]
        starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
        ends = np.r_[starts[1:], len(sc)]
        rows = np.flatnonzero(keep)[order[starts]]  # each session's first row (by time)
        projects = table["project"].take(pa.array(rows)).to_pylist()
        rooms = table["room"].take(pa.array(rows)).to_pylist()
        n_err = np.add.reduceat(err[order], starts).tolist()
        firsts, lasts = st[starts].tolist(), st[ends - 1].tolist()
        count_field = COUNT_FIELD[signal]
        for i, code in enumerate(sc[starts].tolist()):
            sid = sids[code]
            d = deltas.get(sid)
            if d is None:
                d = deltas[sid] = Delta(projects[i], rooms[i], firsts[i], lasts[i])
            else:
                d.first, d.last = min(d.first, firsts[i]), max(d.last, lasts[i])
            d.counts[count_field] = int(ends[i] - starts[i])
            d.errors += int(n_err[i])
        svc_codes, services = _codes(table["service_name"])
        svc_codes = svc_codes[keep][order]
        has = svc_codes >= 0
        if has.any():
            pair = sc[has] * (len(services) + 1) + svc_codes[has]
            _, first = np.unique(pair, return_index=True)  # rows are in time order per session
            for code, svc, t_first in zip(
                sc[has][first].tolist(),
                svc_codes[has][first].tolist(),
                st[has][first].tolist(),
                strict=True,
            ):
                seen = deltas[sids[code]].services
                name = services[svc]
                seen[name] = min(seen.get(name, t_first), t_first)
    return deltas
