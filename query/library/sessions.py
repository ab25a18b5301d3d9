"""Session reads (SPEC 3/4): list, summary, the merged timeline, a session's logs and metrics."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from collector.store.reads import LOG_ROWS, SPAN_ROWS

from . import as_of, session_order
from .display import severity_text
from .errors import NotFound, QueryError
from .filters import LogFilter, MetricFilter, PageFilter, SessionFilter
from .paging import (
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
from .records import METRIC_VALUES, fetch_records, log_rows_sql, select_list
from .search import log_where, metric_where, session_where, where_sql

Record = dict[str, Any]
# The data of the session.ended event the collector's sweep writes (collector/sessions.py).
ENDED_IDLE = json.dumps({"reason": "idle"})


# SPEC 3: the state is the same whoever reads it. The collector's sweep writes ``ended_at`` once
# no record arrived for ``idle``; a reader also shows a session as ended once its last record is
# ``idle`` old, even if no collector ran since (a store read with --db, a collector that was
# stopped): ``ended_at = last_seen_at``, as the sweep would write it. The one parameter is the
# reader's cutoff, ``now - idle`` in epoch ns (Reader.ended_before).
SESSIONS = (
    "(SELECT * REPLACE (CASE WHEN ended_at IS NULL AND last_seen_at <= make_timestamp_ns(?)"
    " THEN last_seen_at ELSE ended_at END AS ended_at) FROM sessions) AS sessions"
)


# Newest first, by each session's start as of the listing's first page (query.library.
# session_order: a late, older record moves no session across the pages), then by id.
SESSION_KEYS = (Key("list_start", desc=True, ts=True), Key("session_id", desc=True))


def list_sessions(
    con: duckdb.DuckDBPyConnection, f: SessionFilter, limit: int, ended_before: int, now: int
) -> Page:
    """A page of sessions, newest first (by start, then id); ``ended_before``: sessions last
    seen then or earlier are ended; ``now`` (epoch ns): the clock of a first page.

    All pages of a listing hold the sessions as of its first page: the cursor keeps that
    page's as-of point (``h``), and the start each session had then is its place."""
    n = f.limit or limit
    listed = fingerprint("sessions", {**f.__dict__, "limit": None, "cursor": None, "count": None})
    pos = decode_cursor(f.cursor, "sessions", listed, SESSION_KEYS)
    with as_of.one_snapshot(con):
        h = pos.extra.get("h")
        if h is None:  # a first page (or a cursor of a roomscope that kept no as-of point)
            h = as_of.high_water(con, now)
            pos = Position(pos.key, pos.n, {**pos.extra, "h": h})
        elif not isinstance(h, int) or isinstance(h, bool):
            raise QueryError("invalid cursor")
        source = (SESSIONS, [ended_before])
        rows = session_order.page_rows(con, source, session_where(f), pos, read_limit(n, pos), h)
    return page_of(rows, SESSION_KEYS, pos, n, lambda p: encode_cursor("sessions", listed, p))


def count_sessions(con: duckdb.DuckDBPyConnection, f: SessionFilter, ended_before: int) -> int:
    """How many sessions the list of ``f`` holds in all (its pages together)."""
    conds, params = session_where(f)
    (total,) = con.execute(
        f"SELECT count(*) FROM {SESSIONS}{where_sql(conds)}", [ended_before, *params]
    ).fetchone()
    return int(total)


def get_session(con: duckdb.DuckDBPyConnection, session_id: str, ended_before: int) -> Record:
    rows = fetch_records(
        con,
        f"SELECT {select_list('sessions')} FROM {SESSIONS} WHERE session_id = ?",
        [ended_before, session_id],
    )
    if not rows:
        raise NotFound(f"no session {session_id!r}")
    return rows[0]


def resolve_session(
    con: duckdb.DuckDBPyConnection, session_id: str | None, room: str | None = None
) -> str:
    """The given session id if it exists (in sessions or any signal table), else the newest."""
    if session_id is None:
        sql = "SELECT session_id FROM sessions"
        params: list[Any] = []
        if room is not None:
            sql += " WHERE room = ?"
            params.append(room)
        row = con.execute(sql + " ORDER BY started_at DESC LIMIT 1", params).fetchone()
        if row is None:
            where = f" in room {room!r}" if room is not None else ""
            raise NotFound(f"no sessions{where}")
        return row[0]
    # The sessions table first: the UNION below reads the signal tables' session_id columns
    # whole (DuckDB runs its branches in parallel), ~12 ms at 10 M spans.
    row = con.execute("SELECT 1 FROM sessions WHERE session_id = ?", [session_id]).fetchone()
    if row is None:
        row = con.execute(
            f"(SELECT 1 FROM {SPAN_ROWS} WHERE session_id = $1 LIMIT 1)"
            f" UNION ALL (SELECT 1 FROM {LOG_ROWS} WHERE session_id = $1 LIMIT 1)"
            " UNION ALL (SELECT 1 FROM metric_points WHERE session_id = $1 LIMIT 1) LIMIT 1",
            [session_id],
        ).fetchone()
    if row is None:
        raise NotFound(f"no session {session_id!r}")
    return session_id


# What a signal's records are read from, which column places them in time, and where its count
# is in _session_row.
_WINDOW = {
    "spans": (SPAN_ROWS, "start_time", 2),
    "logs": (LOG_ROWS, "time", 3),
}


def session_window(
    con: duckdb.DuckDBPyConnection,
    session_id: str,
    table: str,
    alias: str = "",
    must_exist: bool = False,
) -> tuple[str, list[Any]]:
    """`` AND <time> BETWEEN ...[ AND room = ...]``: the session's known time window (and its
    room), when they hold all of the session's records of ``table``; else the window alone, or
    no condition (:func:`session_windows` for one table)."""
    return session_windows(con, session_id, (table,), alias, must_exist)[table]


def session_windows(
    con: duckdb.DuckDBPyConnection,
    session_id: str,
    tables: tuple[str, ...],
    alias: str = "",
    must_exist: bool = False,
) -> dict[str, tuple[str, list[Any]]]:
    """For each of ``tables`` ("spans", "logs"): `` AND <time> BETWEEN ...[ AND room = ...]``,
    the session's known time window (and its room), when they hold all of the session's
    records of that table; else the window alone, or no condition. ``must_exist``: raise
    NotFound when the session is in no table (resolve_session), from the same read of its row.

    Records arrive roughly in time order, so the window lets DuckDB's zone maps skip every row
    group outside it; compaction (store.maintenance) sorts older spans and log records by room,
    and the room then skips the row groups of other rooms. A condition is used only when a
    count under it equals the session's own count: records placed at their receive time
    (clock skew, no timestamp), of another room, or removed by retention make the counts
    differ, and the query then reads more of the table (still right). One statement reads the
    row, one counts every table under its first try, one more the window alone where needed.
    """
    row = _session_row(con, session_id)
    if row is None and must_exist:
        resolve_session(con, session_id)
    found: dict[str, tuple[str, list[Any]]] = {t: ("", []) for t in tables}
    if row is None or row[0] is None:
        return found
    p = f"{alias}." if alias else ""
    tries = {t: _window_tries(row, t, p) for t in tables}
    while tries:
        counts, args, asked = [], [], []
        for t, left in tries.items():
            cond, params = left.pop(0)
            where = cond.replace(p, "")
            counts.append(f"(SELECT count(*) FROM {_WINDOW[t][0]} WHERE session_id = ?{where})")
            args += [session_id, *params]
            asked.append((t, cond, params))
        got = con.execute(f"SELECT {', '.join(counts)}", args).fetchone() or ()
        for (t, cond, params), inside in zip(asked, got, strict=True):
            if inside == row[_WINDOW[t][2]]:
                found[t] = (cond, params)
                del tries[t]
            elif not tries[t]:
                del tries[t]
    return found


def window_guess(
    con: duckdb.DuckDBPyConnection, session_id: str
) -> tuple[str, list[Any], int] | None:
    """session_windows' first try for the spans (`` AND start_time BETWEEN ... AND room =
    ?``, its parameters) not counted yet, and the session's span count to check it against
    (the caller counts on its own read); None without a row or a room."""
    row = _session_row(con, session_id)
    if row is None or row[0] is None or row[4] is None:
        return None
    cond, params = _window_tries(row, "spans", "")[0]
    return cond, params, int(row[2])


def _session_row(con: duckdb.DuckDBPyConnection, session_id: str) -> tuple[Any, ...] | None:
    """The session's first and last time (epoch ns), span and log counts, and room."""
    return con.execute(
        "SELECT epoch_ns(started_at), epoch_ns(last_seen_at), span_count, log_count, room"
        " FROM sessions WHERE session_id = ?",
        [session_id],
    ).fetchone()


def _window_tries(row: tuple[Any, ...], table: str, p: str) -> list[tuple[str, list[Any]]]:
    """The conditions session_windows tries for ``table`` (``p``: alias and dot, or ""), best
    first: the session's window and room (sorted by room once compacted), the window."""
    first, last, room = row[0], row[1], row[4]
    # Under sustained ingest the row trails the newest records by up to a second (the tracker
    # writes row changes in batches, docs/performance.md "Session rows under load"); records
    # newer than its window show once it is written.
    window = f" AND {p}{_WINDOW[table][1]} BETWEEN make_timestamp_ns(?) AND make_timestamp_ns(?)"
    tries = [(window, [first, last])]
    if room is not None:
        tries.insert(0, (f"{window} AND {p}room = ?", [first, last, room]))
    return tries


TIMELINE_KEYS = (Key("time"), Key("o"), Key("hash(e)"))


def session_timeline(
    con: duckdb.DuckDBPyConnection,
    session_id: str,
    ended_before: int,
    page: PageFilter,
    limit: int,
) -> Page:
    """A page of the lifecycle events, log records and error spans of one session, in time
    order (then lifecycle before records, then by content: TIMELINE_KEYS).

    A session the reader shows as ended (``ended_before``) that no sweep has ended yet gets the
    ``session.ended`` event the sweep would write, at its ``last_seen_at``."""
    windows = session_windows(con, session_id, ("logs", "spans"), must_exist=True)
    (lwin, lparams), (swin, sparams) = windows["logs"], windows["spans"]
    sql = f"""
        SELECT epoch_ns(time) AS time, type, NULL AS severity_text, NULL AS service_name,
               CAST(data AS VARCHAR) AS message, NULL AS trace_id, NULL AS span_id,
               CASE type WHEN 'session.started' THEN 0 WHEN 'session.ended' THEN 4 ELSE 1 END AS o,
               NULL AS severity_number
        FROM session_events WHERE session_id = ?
        UNION ALL
        SELECT epoch_ns(last_seen_at), 'session.ended', NULL, NULL, ?, NULL, NULL, 4, NULL
        FROM sessions WHERE session_id = ? AND ended_at IS NULL
                            AND last_seen_at <= make_timestamp_ns(?)
        UNION ALL
        SELECT epoch_ns(time), 'log', severity_text, service_name, body, trace_id, span_id, 2,
               severity_number
        FROM {LOG_ROWS} WHERE session_id = ?{lwin}
        UNION ALL
        SELECT epoch_ns(start_time), 'span.error', status_code, service_name,
               name || coalesce(': ' || nullif(status_message, ''), ''), trace_id, span_id, 3, NULL
        FROM {SPAN_ROWS} WHERE session_id = ? AND status_code = 'ERROR'{swin}
    """
    listed = fingerprint("events", session_id)
    pos = decode_cursor(page.cursor, "events", listed, TIMELINE_KEYS)
    after, aparams = from_position(TIMELINE_KEYS, pos)
    sql = (
        f"SELECT *{key_columns(TIMELINE_KEYS)} FROM ({sql}) e{where_sql(after)}"
        f" ORDER BY {order_by(TIMELINE_KEYS)} LIMIT ?"
    )
    params = [
        session_id,
        ENDED_IDLE,
        session_id,
        ended_before,
        session_id,
        *lparams,
        session_id,
        *sparams,
        *aparams,
        read_limit(page.limit or limit, pos),
    ]  # in the order of the ?s
    rows = fetch_records(con, sql, params)
    found = page_of(
        rows, TIMELINE_KEYS, pos, page.limit or limit, lambda p: encode_cursor("events", listed, p)
    )
    for row in found.records:
        del row["o"]
        number = row.pop("severity_number")
        if row["type"] == "log":  # a level sent as a number only is named (9: INFO)
            row["severity_text"] = severity_text(row["severity_text"], number) or None
    return found


LOG_KEYS = (Key("time", ts=True), Key("received_at", ts=True), Key(f"hash({LOG_ROWS})"))


def session_logs(con: duckdb.DuckDBPyConnection, session_id: str, f: LogFilter, limit: int) -> Page:
    """A page of the session's log records in time order (then receive time, then content).
    Raises NotFound for a session in no table (from the read of its window)."""
    n = f.limit or limit
    listed = fingerprint("logs", session_id, {**f.__dict__, "limit": None, "cursor": None})
    pos = decode_cursor(f.cursor, "logs", listed, LOG_KEYS)
    conds, params = log_where(f)
    window, wparams = session_window(con, session_id, "logs", must_exist=True)
    after, aparams = from_position(LOG_KEYS, pos)
    where = where_sql(["session_id = ?", *conds, *after]) + window
    args = [session_id, *params, *aparams, *wparams, read_limit(n, pos)]
    rows = fetch_records(con, log_rows_sql(where, "", True, keys=LOG_KEYS), args)
    return page_of(rows, LOG_KEYS, pos, n, lambda p: encode_cursor("logs", listed, p))


METRIC_KEYS = (Key("name"), Key("time", ts=True), Key("hash(metric_points)"))


def session_metrics(
    con: duckdb.DuckDBPyConnection, session_id: str, f: MetricFilter, limit: int
) -> Page:
    """A page of the session's metric points, by metric name, then time, then content."""
    n = f.limit or limit
    listed = fingerprint("metrics", session_id, {**f.__dict__, "limit": None, "cursor": None})
    pos = decode_cursor(f.cursor, "metrics", listed, METRIC_KEYS)
    conds, params = metric_where(f)
    after, aparams = from_position(METRIC_KEYS, pos)
    table = "metric_points"
    sql = (
        f"SELECT {select_list(table)}{key_columns(METRIC_KEYS)} FROM {table}"
        f"{where_sql(['session_id = ?', *conds, *after])} ORDER BY {order_by(METRIC_KEYS)} LIMIT ?"
    )
    args = [session_id, *params, *aparams, read_limit(n, pos)]
    rows = fetch_records(con, sql, args, data=METRIC_VALUES)
    return page_of(rows, METRIC_KEYS, pos, n, lambda p: encode_cursor("metrics", listed, p))


# Rooms by name (a room without one first), then project: an order that ingest cannot change
# (last activity would move a busy room across the pages of a listing).
ROOM_KEYS = (Key("room IS NOT NULL"), Key("coalesce(room, '')"), Key("project"))


def list_rooms(
    con: duckdb.DuckDBPyConnection, ended_before: int, page: PageFilter, limit: int
) -> Page:
    """A page of the rooms (per project) with session counts and last activity, by name."""
    n = page.limit or limit
    listed = fingerprint("rooms")
    pos = decode_cursor(page.cursor, "rooms", listed, ROOM_KEYS)
    after, aparams = from_position(ROOM_KEYS, pos)
    sql = f"""
        SELECT project, room, count(*) AS sessions,
               count(*) FILTER (WHERE ended_at IS NULL) AS active_sessions,
               sum(span_count) AS span_count, sum(log_count) AS log_count,
               sum(error_count) AS error_count, epoch_ns(max(last_seen_at)) AS last_seen_at
               {key_columns(ROOM_KEYS)}
        FROM {SESSIONS} GROUP BY project, room{" HAVING " + " AND ".join(after) if after else ""}
        ORDER BY {order_by(ROOM_KEYS)} LIMIT ?
    """
    rows = fetch_records(con, sql, [ended_before, *aparams, read_limit(n, pos)])
    return page_of(rows, ROOM_KEYS, pos, n, lambda p: encode_cursor("rooms", listed, p))
