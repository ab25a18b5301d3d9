"""Span reads (search, one trace, a session's traces) and their shaping into indented trees."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.store.reads import SPAN_ROWS, trace_ids_where

from .as_of import spans_high_water
from .display import printable
from .errors import NotFound, QueryError
from .filters import SpanFilter, format_ns_duration
from .paging import (
    KEY_PREFIX,
    Key,
    Page,
    Position,
    decode_cursor,
    encode_cursor,
    fingerprint,
    from_position,
    key_columns,
    order_by,
    page_of,
    read_limit,
)
from .records import fetch_records, span_rows_sql, table_records, with_resources
from .search import attribute_key_maps, filter_keys, span_where, where_sql

Record = dict[str, Any]
_HEX = set("0123456789abcdef")


# The trace search (query.library.trace_search) looks at the newest 10 seconds, minute, hour,
# then day, before all of time: spans arrive roughly in time order, so DuckDB's zone maps on
# start_time skip every older row group. The short windows are for a busy newest hour (not yet
# compacted, in arrival order); the span search has windows of its own (span_search.py).
SEARCH_WINDOWS_NS = (10 * 10**9, 60 * 10**9, 3_600 * 10**9, 86_400 * 10**9)


def newest_start(con: duckdb.DuckDBPyConnection) -> int | None:
    """About the newest span start (epoch ns): where the newest-first windows begin. Any value
    gives right answers (the windows have no upper bound); a good one makes them hold the
    newest spans. The sessions table's newest ``last_seen_at`` costs ~1 ms, but it is the end
    of the longest recent span: minutes after the newest start when a span ran for minutes,
    which left the first windows empty. So the newest ``last_start`` of ``trace_index`` in
    the hour before it is taken (the index is appended in time order, and zone maps skip the
    rest); ``max(start_time)`` over span_data comes from DuckDB's statistics only while the
    table has no deleted rows (retention, compaction), and otherwise reads every row group
    (17 ms warm, 68 ms cold at 10 M spans)."""
    return start_bounds(con)[0]


# How far before the sessions' newest last_seen_at the newest span start is looked for: the
# end of a long span lies that far after its start at most (a first look over the last ten
# minutes reads 1/6 of an hour's trace_index: 1.8 against 8.5 ms cold on the 10 M burst store).
_BEFORE_LAST_SEEN_NS = (600 * 10**9, 3_600 * 10**9)


def start_bounds(con: duckdb.DuckDBPyConnection) -> tuple[int | None, int | None]:
    """:func:`newest_start`, and about the oldest span start (epoch ns; None: not known): the
    sessions' first ``started_at``. Spans of no session may be older: a search's last window
    has no lower bound."""
    seen, oldest = con.execute(
        "SELECT epoch_ns(max(last_seen_at)), epoch_ns(min(started_at)) FROM sessions"
    ).fetchone()
    if seen is None:  # no sessions tracked
        (newest,) = con.execute(f"SELECT epoch_ns(max(start_time)) FROM {SPAN_ROWS}").fetchone()
        return newest, oldest
    for before in _BEFORE_LAST_SEEN_NS:
        (started,) = con.execute(
            "SELECT epoch_ns(max(last_start)) FROM trace_index"
            " WHERE last_start >= make_timestamp_ns(?) AND last_start <= make_timestamp_ns(?)",
            [seen - before, seen],
        ).fetchone()
        if started is not None:
            return started, oldest
    return seen, oldest


# A session's spans in trace order (SPEC 8): traces by their first span's start, a trace's
# spans together, by start. What a trace's first start is, is fixed for all pages of a listing
# by its snapshot time (the first page's as-of point, query.library.as_of: the newest receive
# time in the store then): only spans received by then are listed, so a trace's root arriving
# after its children (the SDK exports a span when it ends) moves no trace across a page
# boundary; spans received later show in a new listing.
SESSION_KEYS = (
    Key("trace_start", ts=True),
    Key("trace_id"),
    Key("start_time", ts=True),
    Key("span_id"),
)


def session_scope(
    con: duckdb.DuckDBPyConnection,
    session_id: str,
    f: SpanFilter,
    as_of: int,
    window: tuple[str, list[Any]] | None = None,
    must_exist: bool = False,
) -> tuple[str, list[Any], str, list[Any]]:
    """What a listing of the session's spans (``f``'s filters, received by ``as_of``) reads:
    the conditions on span_rows of the session's spans and their parameters, and ``AND
    trace_id IN (...)`` with its parameters, the traces with a matching span ("" when ``f``
    filters nothing). ``window``: the session's window condition (default: session_window's,
    which raises NotFound for a session in no table when ``must_exist``)."""
    from .sessions import session_window  # sessions imports this module's neighbours

    maps = attribute_key_maps(con, filter_keys(f))
    conds, params = span_where(
        SpanFilter(**{**f.__dict__, "session": session_id, "limit": None, "cursor": None}),
        key_maps=maps,
    )
    window, wparams = window or session_window(con, session_id, "spans", must_exist=must_exist)
    mine = f"session_id = ?{window} AND received_at <= make_timestamp_ns(?)"
    if len(conds) <= 1:  # the session itself only
        return mine, [session_id, *wparams, as_of], "", []
    matching = f" AND trace_id IN (SELECT trace_id FROM {SPAN_ROWS}{where_sql(conds)}{window})"
    return mine, [session_id, *wparams, as_of], matching, [*params, *wparams]


def session_spans(
    con: duckdb.DuckDBPyConnection, session_id: str, f: SpanFilter, limit: int
) -> Page:
    """A page of the spans of the session's traces in which at least one span matches (Jaeger
    semantics), in trace order (SESSION_KEYS). Raises NotFound for a session in no table."""
    n = f.limit or limit
    listed = fingerprint("spans", session_id, {**f.__dict__, "limit": None, "cursor": None})
    pos = decode_cursor(f.cursor, "spans", listed, SESSION_KEYS)
    if "as_of" not in pos.extra:
        pos = Position(pos.key, pos.n, {"as_of": spans_high_water(con)})
    as_of = pos.extra["as_of"]
    if not isinstance(as_of, int) or isinstance(as_of, bool):
        raise QueryError("invalid cursor")
    after, aparams = from_position(SESSION_KEYS, pos)
    keys: list[Record] | None = None
    filtered = f != SpanFilter(limit=f.limit, cursor=f.cursor)
    if not filtered:  # the whole session: _checked_keys finds out whether it exists
        keys, mine, margs = _checked_keys(con, session_id, f, as_of, (after, aparams), n, pos)
    if keys is None:
        scope = session_scope(con, session_id, f, as_of, must_exist=filtered)
        mine, margs = scope[0], scope[1]
        keys = _page_keys(con, scope, (after, aparams), n, pos)
    page = page_of(keys, SESSION_KEYS, pos, n, lambda p: encode_cursor("spans", listed, p), True)
    page.records = _whole_spans(con, mine, margs, page.records)
    return page


_TOTAL = "_session_total"


def _page_keys(
    con: duckdb.DuckDBPyConnection,
    scope: tuple[str, list[Any], str, list[Any]],
    after: tuple[list[str], list[Any]],
    n: int,
    pos: Position,
    total: bool = False,
) -> list[Record]:
    """The sort keys of a page of the spans of session_scope's ``scope``, past ``after``
    (from_position's); ``total``: each row also carries how many spans the scope holds."""
    mine, margs, matching, targs = scope
    count = f", count(*) OVER () AS {_TOTAL}" if total else ""
    # One read of the spans (each trace's first start a window over them; a join of the
    # spans to their traces' starts read them twice: 61 -> 35 ms on a 10 M-span lake).
    source = (
        f"(SELECT trace_id, start_time, span_id,"
        f" min(start_time) OVER (PARTITION BY trace_id) AS trace_start{count}"
        f" FROM {SPAN_ROWS} WHERE {mine}{matching})"
    )
    # First the page's sort keys alone, read from four narrow columns; then the whole rows of
    # just those spans (_whole_spans): one query for both held every column of the session's
    # spans while it sorted them (~280 MB for a page of 5,000 of a 300,000-span session; this
    # way ~20 MB).
    sql = (
        f"SELECT {key_columns(SESSION_KEYS)[2:]}{', ' + _TOTAL if total else ''} FROM {source}"
        f"{where_sql(after[0])} ORDER BY {order_by(SESSION_KEYS)} LIMIT ?"
    )
    return fetch_records(con, sql, [*margs, *targs, *after[1], read_limit(n, pos)])


def _checked_keys(
    con: duckdb.DuckDBPyConnection,
    session_id: str,
    f: SpanFilter,
    as_of: int,
    after: tuple[list[str], list[Any]],
    n: int,
    pos: Position,
) -> tuple[list[Record] | None, str, list[Any]]:
    """The page's keys read under the session's window and room without counting first
    (session_window's count reads the room's spans once more: ~10 ms cold at 10 M spans),
    checked on the same read: the spans under them must be all the session's spans its row
    counts, else None (the caller reads under session_window's condition). Raises NotFound
    for a session in no table."""
    from .sessions import resolve_session, window_guess  # (see session_spans)

    guess = window_guess(con, session_id)
    if guess is None:  # no row (or no room): does the session exist at all?
        resolve_session(con, session_id)
        return None, "", []
    window, wparams, expected = guess
    scope = session_scope(con, session_id, f, as_of, (window, wparams))
    keys = _page_keys(con, scope, after, n, pos, total=True)
    if not keys or keys[0][_TOTAL] != expected:
        return None, "", []
    for r in keys:
        del r[_TOTAL]
    return keys, scope[0], scope[1]


# How many more spans than a page's the time range of its spans may hold for _whole_spans to
# read them all (factor, plus): beyond, it reads them by span id.
WHOLE_READ = (2, 500)


def _whole_spans(
    con: duckdb.DuckDBPyConnection, mine: str, margs: list[Any], keys: list[Record]
) -> list[Record]:
    """The spans of a session page's sort keys (SESSION_KEYS' values), in their order: read by
    span id within the time range of their starts, under ``mine`` (session_scope's conditions,
    whose room lets the zone maps skip the other rooms' row groups of compacted ranges)."""
    if not keys:
        return []
    k = KEY_PREFIX
    starts = [r[f"{k}2"] for r in keys]
    ids = sorted({r[f"{k}3"] for r in keys})
    where = f" WHERE {mine} AND start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)"
    args = [*margs, min(starts), max(starts)]
    # A page in trace order is mostly the session's spans of a stretch of time: read those
    # whole, unless the stretch holds many more (a long trace); then by span id. An IN list
    # of a page's 5,000 ids made the read ~10x slower (0.7-1.5 s against 0.12 s in a
    # 100,000-span session, 1 M spans in the store).
    cap = WHOLE_READ[0] * len(keys) + WHOLE_READ[1]
    # Counted as Arrow rows before they become records: a page's worth of whole spans as
    # Python objects is the biggest thing a streamed export holds (query.cli.streamed).
    sql = span_rows_sql(where, "start_time, span_id", True)
    table = con.execute(sql, [*args, cap + 1]).to_arrow_table()
    by_range = table.num_rows <= cap
    if by_range:  # only the page's spans become records
        table = table.filter(pc.is_in(table["span_id"], pa.array(ids)))
        found = table_records(with_resources(con, table))
    del table
    if not by_range:
        found = fetch_records(
            con,
            span_rows_sql(f"{where} AND span_id IN ({', '.join('?' * len(ids))})", "start_time"),
            [*args, *ids],
        )
    rows: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in found:
        rows[(r["trace_id"], r["span_id"])].append(r)
    ordered = [rows[(r[f"{k}1"], r[f"{k}3"])] for r in keys]
    return [same.pop(0) for same in ordered if same]  # none: removed meanwhile (retention)


def check_trace_id(trace_id: str) -> str:
    tid = trace_id.strip().lower()
    if len(tid) != 32 or not set(tid) <= _HEX:
        raise QueryError(f"invalid trace id {trace_id!r}: expected 32 hex digits")
    return tid


def check_span_id(span_id: str) -> str:
    sid = span_id.strip().lower()
    if len(sid) != 16 or not set(sid) <= _HEX:
        raise QueryError(f"invalid span id {span_id!r}: expected 16 hex digits")
    return sid


def trace_extent(con: duckdb.DuckDBPyConnection, tid: str) -> tuple[Any, Any, list[str] | None]:
    """The trace's first and last span start, and its rooms (None when a span of it has no
    room), from the small trace_index table."""
    first, last, rooms, null_room = con.execute(
        "SELECT epoch_ns(min(first_start)), epoch_ns(max(last_start)),"
        " list(DISTINCT room ORDER BY room) FILTER (WHERE room IS NOT NULL),"
        " bool_or(room IS NULL) FROM trace_index WHERE trace_key = ?::UBIGINT",
        [int(tid[:16], 16)],
    ).fetchone()
    return first, last, None if null_room else rooms


def trace_window(con: duckdb.DuckDBPyConnection, tid: str) -> tuple[str, list[Any]]:
    """`` AND start_time BETWEEN … [AND room …]`` and its parameters: the trace's time range
    and rooms from trace_index, so that only the row groups of those times and rooms are read
    (old ranges are sorted by room by compaction); "" when the index does not know the trace
    (spans without a start time, a store without the index)."""
    first, last, rooms = trace_extent(con, tid)
    if first is None:
        return "", []
    window = " AND start_time BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)"
    if rooms:
        marks = ", ".join("?" * len(rooms))
        window += " AND room = ?" if len(rooms) == 1 else f" AND room IN ({marks})"
    return window, [first, last, *(rooms or [])]


def get_trace(con: duckdb.DuckDBPyConnection, trace_id: str) -> list[Record]:
    tid = check_trace_id(trace_id)
    cond, ids = trace_ids_where("", [tid])
    where = f" WHERE {cond}"
    order = "start_time, span_id"
    window, wparams = trace_window(con, tid)
    rows = []
    if window:
        rows = fetch_records(con, span_rows_sql(where + window, order), [*ids, *wparams])
    if not rows:  # outside the window too: every trace id is read
        rows = fetch_records(con, span_rows_sql(where, order), ids)
    if not rows:
        raise NotFound(f"no trace {tid}")
    return rows


def span_trees(spans: list[Record]) -> list[tuple[str, list[tuple[int, Record]]]]:
    """Group spans by trace (in order of first start) and order each as (depth, span), depth-first.

    A span whose parent is not among ``spans`` is a root; children follow their start time.
    """
    by_trace: dict[str, list[Record]] = defaultdict(list)
    for span in spans:
        by_trace[span["trace_id"]].append(span)
    trees = []
    for trace_id, members in by_trace.items():
        ids = {s["span_id"] for s in members}
        children: dict[str | None, list[Record]] = defaultdict(list)
        for s in members:
            parent = s.get("parent_span_id")
            children[parent if parent in ids else None].append(s)
        for kids in children.values():
            kids.sort(key=lambda s: (s["start_time"] or "", s["span_id"]))
        ordered: list[tuple[int, Record]] = []
        stack = [(0, s) for s in reversed(children[None])]
        while stack:
            depth, span = stack.pop()
            ordered.append((depth, span))
            stack.extend((depth + 1, c) for c in reversed(children.get(span["span_id"], [])))
        trees.append((trace_id, ordered))
    trees.sort(key=lambda t: t[1][0][1]["start_time"] or "")
    return trees


def render_trees(spans: list[Record], show_attrs: bool = False) -> list[str]:
    """Indented span trees: name, start, duration (human unit), status[, sorted k=v].

    A trace's header names its span count, first start, and every room and session its
    spans belong to; a span line shows the time of day, with the date when it is not the
    date of the header's start. Control characters in the data are escaped (printable)."""
    lines: list[str] = []
    for trace_id, ordered in span_trees(spans):
        root = ordered[0][1]
        first = root["start_time"] or ""
        places = [
            _places(label, [s[column] for _d, s in ordered])
            for label, column in (("room", "room"), ("session", "session_id"))
        ]
        where = " ".join(p for p in places if p)
        lines.append(f"trace {trace_id}  {len(ordered)} spans  {first}  {where}".rstrip())
        names = [printable(s["name"] or "") for _d, s in ordered]
        width = max(2 * d + len(n) for (d, _s), n in zip(ordered, names, strict=True)) + 2
        for (depth, s), name in zip(ordered, names, strict=True):
            label = "  " * depth + name
            start = s["start_time"] or ""
            start = start[11:23] if start[:10] == first[:10] else start[:23].replace("T", " ")
            status = s["status_code"] or ""
            if s.get("status_message"):
                status += f" ({s['status_message']})"
            duration = format_ns_duration(s["duration_ns"])
            service = printable(s["service_name"] or "")
            line = f"  {label:<{width}}{start}  {duration:>8}  {service:<12}  {status}"
            if (s["duration_ns"] or 0) < 0:
                line += "  (end before start)"
            if show_attrs and s.get("attributes"):
                line += "  " + " ".join(f"{k}={v}" for k, v in sorted(s["attributes"].items()))
            lines.append(printable(line.rstrip()))
        lines.append("")
    return lines


def _places(label: str, values: list[str | None]) -> str:
    """``room=a`` or ``rooms=a,b`` (in order of first appearance); "" when none."""
    seen = list(dict.fromkeys(printable(v) for v in values if v))
    if not seen:
        return ""
    return f"{label}={seen[0]}" if len(seen) == 1 else f"{label}s={','.join(seen)}"
