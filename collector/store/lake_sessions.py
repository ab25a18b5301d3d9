"""Sessions across replicas: one turn at a time, each starting from every replica's changes.

A room's records may reach any replica, and which inferred session a burst belongs to, the
counts, ``session.started``/``service.joined``/``session.ended`` — all depend on the state
every earlier record left. So the replicas take turns: a commit that writes session rows (a
group commit of records, a sweep) runs inside a *session turn*, which

1. takes a PostgreSQL advisory lock in the catalog database (:class:`SessionLock`, on a
   connection of its own; a replica that dies loses its connection and with it the lock), then
2. reads the session rows other replicas changed since this replica's last turn: from the
   session journal (:mod:`collector.store.lake_session_journal`, one PostgreSQL query), or,
   when a commit is missing there, from DuckLake's change feed (``table_changes`` between two
   snapshots): the tracker adopts them before it plans, as if it had made those changes itself;
3. the caller prepares and commits, writing its session rows to the journal just before the
   COMMIT; the lock is released after the commit.

The outcome is that of one collector receiving the records in commit order. The cost is that
commits that write session rows do not overlap across replicas (the decoding, most of ingest's
CPU, still does), so each turn should carry a large commit; see docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Iterator

import duckdb
import psycopg
import pyarrow as pa

from ..errors import StoreUnavailable
from .lake_session_journal import SessionJournal, written_states
from .session_rows import SessionPlan, SessionState, session_row

LOCK_KEY = zlib.crc32(b"roomscope.sessions")  # the advisory lock's key (one per catalog)
CONNECT_TIMEOUT = 5


class SessionLock:
    """The catalog's advisory lock for session turns, on a connection of this replica's own."""

    def __init__(self, catalog: str):
        self.catalog = catalog
        self._con: psycopg.Connection | None = None
        self._journal = SessionJournal()
        self.waited = 0.0  # seconds spent waiting for the lock

    def _connection(self) -> psycopg.Connection:
        if self._con is None or self._con.closed:
            self._con = psycopg.connect(
                self.catalog, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
        return self._con

    @contextlib.contextmanager
    def held(self, me: str, after: int) -> Iterator[tuple[int, bool]]:
        """The lock, for the duration (StoreUnavailable when the catalog cannot be reached).
        Yields the lake's latest snapshot and whether a commit of another than ``me`` (a
        commit author) came after snapshot ``after``: read from DuckLake's own catalog table,
        an indexed query, instead of a scan of the change feed at every turn."""
        try:
            con = self._connection()
            began = time.perf_counter()
            con.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
            self.waited += time.perf_counter() - began
            row = con.execute(_SINCE, [me, after]).fetchone()
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailable(f"lake catalog cannot be reached: {exc}") from exc
        try:
            yield (int(row[0]) if row and row[0] is not None else after), bool(row and row[1])
        finally:
            try:
                con.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
            except psycopg.Error:
                self.close()  # the lock went with the connection

    def journaled(self, me: str, after: int, upto: int) -> list[SessionState] | None:
        """Other replicas' session rows of snapshots ``after`` + 1 … ``upto`` from the journal,
        or None when it lacks one of those commits (read ``table_changes`` then)."""
        try:
            return self._journal.read(self._connection(), me, after, upto)
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailable(f"lake catalog cannot be reached: {exc}") from exc

    def journal(self, tag: str, plan: SessionPlan) -> None:
        """Record the session rows ``plan`` writes in the commit tagged ``tag`` (the lock held,
        before the COMMIT)."""
        states = written_states(plan)
        if not states:
            return
        try:
            self._journal.write(self._connection(), tag, states)
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailable(f"lake catalog cannot be reached: {exc}") from exc

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(psycopg.Error):
                self._con.close()
            self._con = None


# The latest snapshot after ``after`` and whether another author made one of them.
_SINCE = (
    "SELECT max(snapshot_id), bool_or(author IS DISTINCT FROM %s)"
    " FROM ducklake_snapshot_changes WHERE snapshot_id > %s"
)

_CHANGED = """
WITH c AS (
  SELECT * FROM {lake}.table_changes('sessions', ?, ?)
  WHERE change_type IN ('insert', 'update_postimage')
  QUALIFY row_number() OVER (PARTITION BY session_id ORDER BY snapshot_id DESC, rowid DESC) = 1
)
SELECT session_id, project, room, source, epoch_ns(started_at), epoch_ns(last_seen_at),
       epoch_ns(ended_at), span_count, log_count, metric_point_count, error_count, services
FROM c
"""

_JOINED = (
    "SELECT session_id, data->>'service', epoch_ns(min(time)) FROM {lake}.session_events"
    " WHERE type = 'service.joined' AND list_contains(?, session_id) GROUP BY ALL"
)


def current_snapshot(con: duckdb.DuckDBPyConnection, lake: str) -> int:
    row = con.execute(f"SELECT id FROM {lake}.current_snapshot()").fetchone()
    return int(row[0]) if row else 0


def changed_sessions(
    con: duckdb.DuckDBPyConnection, lake: str, after: int, upto: int
) -> list[SessionState]:
    """The session rows as the snapshots ``after`` + 1 … ``upto`` left them (each session's
    latest), with their service.joined times; ``last_arrival`` is now (records of them
    arrived at some replica just now, as far as this one can tell)."""
    if upto <= after:
        return []
    rows = con.execute(_CHANGED.format(lake=lake), [after + 1, upto]).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    joined = {
        (sid, svc): t for sid, svc, t in con.execute(_JOINED.format(lake=lake), [ids]).fetchall()
    }
    now = time.time_ns()
    out = []
    for r in rows:
        services = tuple(r[11] or ())
        times = tuple(joined.get((r[0], svc), r[4]) for svc in services)
        out.append(SessionState(*r[:11], services=services, joined=times, last_arrival=now))
    return out


_TS = pa.timestamp("ns")
_SESSIONS = pa.schema(
    [
        ("session_id", pa.string()),
        ("project", pa.string()),
        ("room", pa.string()),
        ("source", pa.string()),
        ("started_at", _TS),
        ("last_seen_at", _TS),
        ("ended_at", _TS),
        ("span_count", pa.int64()),
        ("log_count", pa.int64()),
        ("metric_point_count", pa.int64()),
        ("error_count", pa.int64()),
        ("services", pa.list_(pa.string())),
    ]
)
_EVENTS = pa.schema(
    [
        ("session_id", pa.string()),
        ("project", pa.string()),
        ("room", pa.string()),
        ("time", _TS),
        ("type", pa.string()),
        ("data", pa.string()),
    ]
)


def apply_plan(plan: SessionPlan, con: duckdb.DuckDBPyConnection) -> None:
    """Write a plan to a lake's tables in a few set statements (SessionPlan.apply's rows and
    events): each DuckLake UPDATE scans the table and reads the catalog, so the changed rows
    are deleted at once and inserted again, and the events inserted in one statement."""
    updates = plan.updates if plan.flushes else {}
    rows = written_states(plan)
    if updates:
        # IN, not list_contains: DuckLake skips the files whose range of ids misses them
        # (inferred sessions' ids are ULIDs, in time order; tests/benchmarks/lake_session_delete.py)
        con.execute(
            "DELETE FROM sessions WHERE session_id IN (SELECT unnest(?::VARCHAR[]))",
            [list(updates)],
        )
    if rows:
        _roomscope_rows = pa.Table.from_pylist(  # read by DuckDB (a replacement scan)
            [dict(zip(_SESSIONS.names, session_row(s), strict=True)) for s in rows],
            schema=_SESSIONS,
        )
        con.execute("INSERT INTO sessions SELECT * FROM _roomscope_rows")
    for sid, kind, t, svc in plan.retimes:
        service = " AND (data->>'service') = ?" if svc is not None else ""
        con.execute(
            "UPDATE session_events SET time = make_timestamp_ns(?)"
            f" WHERE session_id = ? AND type = ?{service}",
            [t, sid, kind, *([svc] if svc is not None else [])],
        )
    if plan.events:
        _roomscope_events = pa.Table.from_pylist(  # read by DuckDB (a replacement scan)
            [dict(zip(_EVENTS.names, e, strict=True)) for e in plan.events], schema=_EVENTS
        )
        con.execute(
            "INSERT INTO session_events SELECT session_id, project, room, time, type,"
            " data::JSON FROM _roomscope_events"
        )
