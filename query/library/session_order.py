"""The session list's order, held still while ingest goes on (SPEC 8).

The session list pages newest first by (start, session id), and a session's start is its
earliest record (SPEC 3): a late record older than that start moves the session back, maybe
behind a page already read, where it would be listed again. So the pages of one listing order
the sessions as of one point, the **as-of** point of the first page (query.library.as_of): a
receive time ``H`` such that every record received by ``H`` was in the store when the first
page was read (the newest ``received_at`` then). A session's place on every page is its start
among its records received by ``H``; the ``started_at`` shown stays the true earliest record.

That start is found cheaply for nearly every session:

* the start the tracker keeps in the ``session.started`` event, written in the same transaction
  as the records (the ``sessions`` row's ``started_at`` trails it by up to a second under
  load), is the session's earliest record now;
* only a session with a record received after ``H`` whose time is at or before that start may
  have moved since the first page: records received after ``H`` are the newest row groups of
  the signal tables (few, and DuckDB skips the rest by their ``received_at`` zone maps). For
  those few sessions the start as of ``H`` is read from their records received by ``H``; a
  session with none did not exist at the first page, and this listing leaves it out (a new
  listing shows it).

A page is read in one read transaction (query.library.as_of.one_snapshot): first by the rows'
own ``started_at`` (a top-N over the sessions table, as the list always was), then placed by
those starts, with the few sessions whose place differs from their row (:func:`page_rows`).

A record's time here is its timestamp, or its receive time when it has none (the tracker also
places a record stamped more than ``sessions.max_future_skew`` ahead of its receive time at
that receive time; such a record read here by its own time may place its session differently
across the pages, when it is the session's earliest).
"""

from __future__ import annotations

from typing import Any

import duckdb

from .as_of import TIMED
from .paging import KEY_PREFIX, Key, Position, from_position, key_columns, order_by
from .records import fetch_records, select_list
from .search import where_sql

Record = dict[str, Any]
Source = tuple[str, list[Any]]  # a FROM item of session rows and its parameters
Where = tuple[list[str], list[Any]]  # conditions on session rows and their parameters
# A session's start as the tracker keeps it with its records (see the module doc), of the
# sessions meeting a condition; a session without the event (none in its store): its row's.
STARTED = (
    "SELECT session_id, epoch_ns(min(time)) FROM session_events"
    " WHERE type = 'session.started' AND {cond} GROUP BY ALL"
)


def _records(of: str | None = None) -> str:
    """The (session id, time) of the records received after the as-of point (a parameter),
    over the three signal tables; ``of`` (a condition on session_id): instead the records
    received by it of those sessions, from a time on (a parameter; records without a
    timestamp whatever their receive time)."""
    if of is not None:
        where = (
            f"received_at <= make_timestamp_ns(?) AND {of}"
            " AND ({c} >= make_timestamp_ns(?) OR {c} IS NULL)"
        )
    else:
        where = "received_at > make_timestamp_ns(?) AND session_id IS NOT NULL"
    return " UNION ALL ".join(
        f"SELECT session_id, coalesce({column}, received_at) AS t FROM {table}"
        f" WHERE {where.format(c=column)}"
        for table, column in TIMED
    )


def starts(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, int]:
    """The start (epoch ns) the tracker keeps for each of ``ids`` that has one."""
    if not ids:
        return {}
    (cond,), params = _in(ids)
    return dict(con.execute(STARTED.format(cond=cond), params).fetchall())


def moved(con: duckdb.DuckDBPyConnection, h: int) -> dict[str, int | None]:
    """The sessions whose start may have moved since the as-of point ``h``, each with its start
    as of ``h`` (epoch ns), or None: it has no record received by ``h`` (it is new)."""
    sql = f"SELECT session_id, epoch_ns(min(t)) FROM ({_records()}) GROUP BY ALL"
    after = dict(con.execute(sql, [h] * 3).fetchall())
    if not after:
        return {}
    ids = sorted(after)
    (cond,), params = _in(ids)
    sql = f"SELECT session_id, epoch_ns(started_at) FROM sessions WHERE {cond}"
    now = dict(con.execute(sql, params).fetchall())
    now.update(starts(con, ids))
    found = {sid: now[sid] for sid in ids if sid in now and after[sid] <= now[sid]}
    if not found:
        return {}
    # Their records received by h: the earliest is at or after their start now (for records
    # with a timestamp, a bound that lets DuckDB skip older row groups by their zone maps).
    ids = sorted(found)
    (cond,), params = _in(ids)
    sql = f"SELECT session_id, epoch_ns(min(t)) FROM ({_records(cond)}) GROUP BY ALL"
    before = dict(con.execute(sql, [h, *params, min(found.values())] * 3).fetchall())
    return {sid: before.get(sid) for sid in ids}


_K0, _K1 = f"{KEY_PREFIX}0", f"{KEY_PREFIX}1"
# The rows' own order: by the start their row holds, then id, newest first.
ROW_KEYS = (Key("started_at", desc=True, ts=True), Key("session_id", desc=True))


def page_rows(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    where: Where,
    pos: Position,
    want: int,
    h: int,
) -> list[Record]:
    """The first ``want`` session rows at or after ``pos`` in the listing's order (newest place
    first, then id), each with its place and id as the hidden key columns of
    query.library.paging. ``source``: the session rows (a FROM item, its parameters);
    ``where``: the list's filters on them; ``h``: the as-of point.

    Read by the rows' own ``started_at`` (zone maps, top-N), then placed. A session's place is
    at or before its row's start, so the rows down to the last one read, the sessions whose
    tracked start falls in that range while their rows are ahead of the cursor (their rows not
    yet written), and the moved sessions hold every session placed down to there."""
    placed = moved(con, h) if pos.key else {}
    size = want
    while True:
        rows = _by_row(con, source, where, pos, size)
        found = {r["session_id"]: r for r in rows}
        extra: list[Record] = []
        if len(rows) < size:  # every row at or after the cursor: few
            last = None
            tracked = starts(con, list(found))
            if pos.key:
                extra = _ahead(con, source, where, pos, None)
        else:
            last = min((r[_K0], r[_K1]) for r in rows)
            tracked = _started_between(con, last[0], pos)
            # Rows whose tracked start is before the range read (rows that trail), or none.
            tracked.update(starts(con, [sid for sid in found if sid not in tracked]))
            others = [sid for sid in tracked if sid not in found] if pos.key else []
            if len(others) > 2 * size:  # many of another room, say: those ahead of the cursor
                extra = _ahead(con, source, where, pos, last)
            elif others:
                extra = _read(con, source, where, _in(others))
        for r in [*rows, *extra]:
            r.setdefault(_E, tracked.get(r["session_id"], r[_K0]))
            found[r["session_id"]] = r
        more = [sid for sid, start in placed.items() if start is not None and sid not in found]
        if more:
            found.update((r["session_id"], r) for r in _read(con, source, where, _in(more)))
        out = []
        for sid, r in found.items():
            start = placed[sid] if sid in placed else r[_E]
            r.pop(_E, None)
            if start is None:
                continue  # new since the as-of point
            key = (start, sid)
            if pos.key and key > tuple(pos.key):
                continue  # ahead of the cursor: listed before
            r[_K0], r[_K1] = key
            out.append(r)
        out.sort(key=lambda r: (r[_K0], r[_K1]), reverse=True)
        # Exact down to the last row read: enough there, or every row was read.
        if last is None or sum((r[_K0], r[_K1]) >= last for r in out) >= want:
            return out[:want]
        size *= 2


_E = "_page_started"  # a row's tracked start (epoch ns)
# The tracked starts of the sessions of a condition on session_events.
_STARTS = (
    "(SELECT session_id, min(time) AS started FROM session_events"
    " WHERE type = 'session.started' AND {cond} GROUP BY ALL)"
)


def _started_between(con: duckdb.DuckDBPyConnection, lo: int, pos: Position) -> dict[str, int]:
    """The tracked starts from ``lo`` (epoch ns) to the cursor's (none: the last)."""
    conds, params = ["time >= make_timestamp_ns(?)"], [lo]
    if pos.key:
        conds.append("time <= make_timestamp_ns(?)")
        params.append(pos.key[0])
    return dict(con.execute(STARTED.format(cond=" AND ".join(conds)), params).fetchall())


def _in(ids: list[str]) -> Where:
    """``session_id`` one of ``ids`` (one parameter each: DuckDB looks up a list parameter,
    ``IN (SELECT unnest(?))``, several times slower)."""
    return [f"session_id IN ({', '.join('?' * len(ids))})"], list(ids)


def _columns() -> str:
    return select_list("sessions") + key_columns(ROW_KEYS)


def _read(
    con: duckdb.DuckDBPyConnection, source: Source, where: Where, more: Where, tail: str = ""
) -> list[Record]:
    """The rows of ``source`` meeting ``where`` and ``more`` (then ``tail``: ORDER BY ...)."""
    sql, sparams = source
    conds, params = where
    extra, eparams = more
    sql = f"SELECT {_columns()} FROM {sql}{where_sql([*conds, *extra])}{tail}"
    return fetch_records(con, sql, [*sparams, *params, *eparams])


def _by_row(
    con: duckdb.DuckDBPyConnection, source: Source, where: Where, pos: Position, size: int
) -> list[Record]:
    """The first ``size`` rows at or after ``pos`` by their own start (then id)."""
    after, aparams = from_position(ROW_KEYS, pos)
    tail = f" ORDER BY {order_by(ROW_KEYS)} LIMIT {int(size)}"
    return _read(con, source, where, (after, aparams), tail)


def _ahead(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    where: Where,
    pos: Position,
    last: tuple[int, str] | None,
) -> list[Record]:
    """The rows ahead of ``pos`` by their own start whose tracked start is at or before it (down
    to ``last``'s start): sessions whose row's start trails their records."""
    sql, sparams = source
    conds, params = where
    t, sid = pos.key
    span = "time <= make_timestamp_ns(?)" + (" AND time >= make_timestamp_ns(?)" if last else "")
    ahead = (
        "(started_at > make_timestamp_ns(?)"
        " OR (started_at = make_timestamp_ns(?) AND session_id > ?))"
    )
    sql = (
        f"SELECT {_columns()}, epoch_ns(e.started) AS {_E} FROM {sql}"
        f" JOIN {_STARTS.format(cond=span)} e USING (session_id){where_sql([*conds, ahead])}"
    )
    args = [*sparams, t, *([last[0]] if last else []), *params, t, t, sid]
    return fetch_records(con, sql, args)
