"""Merging settled ranges: several ranges of ``span_archive`` become one, sorted by room again.

Each move (compaction.py) sorts one range of ~``compaction.rows`` spans by room, so a
room's spans of that range fill one row group; a search by room still reads one row group per
range, and each row group it reads costs DuckDB a block of every column it returns (~1 ms cold
per row group at 10 M spans). Like the tiers of an LSM tree, ``compaction.merge`` ranges of
one level that follow each other in time become one range of the next level, up to
``compaction.levels``: with the defaults (4 and 2) the 9 ranges of the 10 M-span benchmark
become 2 + 1, and query 1's cold run went from 57–60 to 45–50 ms (docs/performance.md,
"Merging compacted ranges").

A merge is done in pieces of about ``compaction.rows`` spans, by slices of room values (from
quantiles), so that the writer is never held longer than for a move: each piece is one
transaction that appends the slice's spans of the whole merged range, sorted, and deletes
their old copies (those of a row id below the table's end before the append). The pieces are
appended one after the other, so the merged range runs room by room in storage order. A reader
sees each span once, before or after its piece; after a crash the next run merges the same
ranges again (the pieces done already are rewritten once more). The ``span_clusters`` rows of
the ranges are replaced by the merged range's once every piece is done.

The log records of a range are sorted with its spans, in place in ``log_data`` (by room,
project, session, time; :func:`sort_logs`): by the move and by each merge piece, in the same
transaction, so that a session's or a room's records of the range lie together as its spans do
and its reads skip the other rooms' row groups (the session's timeline and logs add the room
they know). Records that arrive for a range already sorted stay where they were appended until
a merge covers the range.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import duckdb

from ..schema import SPAN_CLUSTERS
from ..span_archive import ARCHIVE, SORT_KEY, SPAN_RANGE, START_RANGE
from ..statements import rewrite_rows, transaction

LOGS = "log_data"
LOG_SORT_KEY = "room, project, session_id, time"
LOG_RANGE = START_RANGE.format(c="time")


@dataclass(frozen=True)
class Merge:
    """Ranges of one ``level``, consecutive in time, that together cover ``[first_ns, last_ns)``
    and held ``spans`` when they were made."""

    level: int
    first_ns: int
    last_ns: int
    spans: int
    ranges: int


@dataclass(frozen=True)
class Piece:
    """One slice of room values: a SQL condition on ``room`` and its parameters."""

    where: str
    params: tuple[str, ...]


EVERY_ROOM = Piece("TRUE", ())


def next_merge(
    con: duckdb.DuckDBPyConnection,
    fanin: int,
    levels: int,
    oldest_ns: int | None = None,
    rows: int = 0,
) -> Merge | None:
    """The oldest ``fanin`` ranges of the lowest level below ``levels`` that follow each other
    in time (no range of another level, or of span_data, between them), or None. Ranges that
    start before ``oldest_ns`` are left to retention; the newest range, when it is of level 0
    and holds fewer than ``rows`` spans, is left to the next move, which takes it back
    (moves.py)."""
    if fanin < 2 or levels < 1:
        return None
    ranges = con.execute(
        f"SELECT epoch_ns(first_start), epoch_ns(last_start), spans, level FROM {SPAN_CLUSTERS}"
        " ORDER BY first_start"
    ).fetchall()
    if ranges and provisional(ranges[-1][3], ranges[-1][2], rows):
        ranges.pop()
    for level in range(levels):
        for i in range(len(ranges) - fanin + 1):
            run = ranges[i : i + fanin]
            if all(r[3] == level for r in run) and (oldest_ns is None or run[0][0] >= oldest_ns):
                return Merge(level, run[0][0], run[-1][1], sum(r[2] for r in run), fanin)
    return None


def provisional(level: int | None, spans: int, rows: int) -> bool:
    """Whether the newest range (its ``level`` and ``spans``) is one the next move takes back:
    of level 0 and fewer than ``rows`` spans (moves.py)."""
    return level == 0 and spans < rows


def pieces(con: duckdb.DuckDBPyConnection, merge: Merge, rows: int) -> list[Piece]:
    """Slices of room values that split the merge's spans into pieces of about ``rows`` (the
    last one also holds the spans without a room). Every span is in exactly one slice."""
    k = max(1, math.ceil(merge.spans / max(1, rows)))
    bounds: list[str] = []
    if k > 1:  # the smallest room value, then the k - 1 inner quantiles
        quantiles = ", ".join(str(i / k) for i in range(k))
        (found,) = con.execute(
            f"SELECT quantile_disc(room, [{quantiles}]) FROM {ARCHIVE} WHERE {SPAN_RANGE}",
            [merge.first_ns, merge.last_ns],
        ).fetchone()
        if found and found[0] is not None:  # else no span has a room
            bounds = sorted({b for b in found[1:]} - {found[0]})
    if not bounds:
        return [EVERY_ROOM]
    out = [Piece("room < ?", (bounds[0],))]
    out += [Piece("room >= ? AND room < ?", (a, b)) for a, b in itertools.pairwise(bounds)]
    out.append(Piece("(room >= ? OR room IS NULL)", (bounds[-1],)))
    return out


def merge_piece(con: duckdb.DuckDBPyConnection, merge: Merge, piece: Piece) -> int:
    """Rewrite the piece's spans of the merged range at the end of span_archive, sorted by
    room, and delete their old copies, and sort its log records likewise (one transaction);
    returns how many spans moved."""
    bounds = [merge.first_ns, merge.last_ns]
    where = f"{SPAN_RANGE} AND {piece.where}"
    with transaction(con):
        moved = rewrite_rows(con, ARCHIVE, where, [*bounds, *piece.params], SORT_KEY)
        sort_logs(con, bounds, piece)
        return moved


def sort_logs(con: duckdb.DuckDBPyConnection, bounds: list[int], piece: Piece = EVERY_ROOM) -> int:
    """Rewrite the log records of a range of times ``[first, last)`` (ns; of one slice of rooms,
    ``piece``) at the end of log_data sorted by LOG_SORT_KEY and delete their old copies, in the
    caller's transaction (a move, a merge piece); returns how many."""
    where = f"{LOG_RANGE} AND {piece.where}"
    return rewrite_rows(con, LOGS, where, [*bounds, *piece.params], LOG_SORT_KEY)


def finish_merge(
    con: duckdb.DuckDBPyConnection, merge: Merge, spans: int, now_ns: int | None = None
) -> None:
    """Replace the merged ranges' span_clusters rows by one row of the next level."""
    bounds = [merge.first_ns, merge.last_ns]
    with transaction(con):
        within = START_RANGE.format(c="first_start")
        con.execute(
            f"DELETE FROM {SPAN_CLUSTERS} WHERE level = ? AND {within}", [merge.level, *bounds]
        )
        add_cluster(con, bounds, spans, merge.level + 1, now_ns)


def add_cluster(
    con: duckdb.DuckDBPyConnection, bounds: list[int], spans: int, level: int, now_ns: int | None
) -> None:
    """Record a range of span_archive (first and last start, ns) in span_clusters."""
    made = time.time_ns() if now_ns is None else now_ns
    con.execute(
        f"INSERT INTO {SPAN_CLUSTERS} (first_start, last_start, spans, clustered_at, level)"
        " VALUES (make_timestamp_ns(?), make_timestamp_ns(?), ?, make_timestamp_ns(?), ?)",
        [*bounds, spans, made, level],
    )
