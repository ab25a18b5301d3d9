"""The session rows: the state of one session, the plan of one commit, and their SQL.

:class:`SessionState` is a session as the tracker holds it; :class:`SessionPlan` the rows,
events and event times one group commit writes. The tracker (collector/sessions.py) makes
them; the store writes them with the commit's records and reads them back at start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb


@dataclass(frozen=True)
class SessionState:
    session_id: str
    project: str | None
    room: str | None
    source: str  # "explicit" or "inferred"
    started_at: int  # ns
    last_seen_at: int
    ended_at: int | None
    span_count: int = 0
    log_count: int = 0
    metric_point_count: int = 0
    error_count: int = 0
    services: tuple[str, ...] = ()
    last_arrival: int = 0  # wall-clock ns when a record of it last arrived (not stored)
    # Per service (parallel to ``services``): the time of its first record, where its
    # service.joined event stands (not in the row: read back from session_events).
    joined: tuple[int, ...] = ()


@dataclass
class SessionPlan:
    """Rows to upsert into ``sessions``, events to insert, event times to move."""

    states: dict[str, SessionState] = field(default_factory=dict)
    events: list[tuple[str, str | None, str | None, int, str, str]] = field(default_factory=list)
    # Events to move: (session id, event type, new time, service or None). A service.joined
    # event is one per service of a session, so the service is part of its key.
    retimes: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # states that are new rows
    # Existing rows this plan changes (with the tracker's pending changes when it flushes), and
    # which of them have a longer services list than the stored row; written only if it flushes.
    updates: dict[str, SessionState] = field(default_factory=dict)
    services_grew: set[str] = field(default_factory=set)
    flushes: bool = True  # False: the changes to existing rows wait for a later plan

    def event(self, s: SessionState, time_ns: int, kind: str, data: dict[str, Any]) -> None:
        self.events.append((s.session_id, s.project, s.room, time_ns, kind, json.dumps(data)))

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        """Write the plan with plain parameterized statements (cheaper than registering Arrow
        tables for the handful of rows a group commit touches)."""
        new = [s for sid, s in self.states.items() if sid in self.created]
        if new:
            con.executemany(_INSERT_SESSION, [session_row(s) for s in new])
        # Rewriting the services list costs DuckDB ~3x a plain update: only when it grew.
        updates = self.updates if self.flushes else {}
        grown = [s for sid, s in updates.items() if sid in self.services_grew]
        same = [s for sid, s in updates.items() if sid not in self.services_grew]
        if grown:
            con.executemany(_UPDATE_SESSION, [[*session_row(s)[4:], s.session_id] for s in grown])
        if same:
            con.executemany(_UPDATE_COUNTS, [[*session_row(s)[4:-1], s.session_id] for s in same])
        plain = [[t, sid, kind] for sid, kind, t, svc in self.retimes if svc is None]
        if plain:
            con.executemany(
                "UPDATE session_events SET time = make_timestamp_ns(?)"
                " WHERE session_id = ? AND type = ?",
                plain,
            )
        joined = [[t, sid, kind, svc] for sid, kind, t, svc in self.retimes if svc is not None]
        if joined:
            con.executemany(
                "UPDATE session_events SET time = make_timestamp_ns(?)"
                " WHERE session_id = ? AND type = ? AND (data->>'service') = ?",
                joined,
            )
        if self.events:
            con.executemany(
                "INSERT INTO session_events VALUES (?, ?, ?, make_timestamp_ns(?), ?, ?)",
                [list(e) for e in self.events],
            )


FLUSH_NS = 1_000_000_000  # pending session-row changes are written at least this often

# Per active session: its records in each table and its error records (as session_infer counts).
RECOUNT_SQL = """
WITH active AS (SELECT session_id FROM sessions WHERE ended_at IS NULL),
s AS (SELECT session_id, count(*) AS n, count_if(status_code = 'ERROR') AS e FROM span_rows
      WHERE session_id IN (SELECT session_id FROM active) GROUP BY 1),
l AS (SELECT session_id, count(*) AS n, count_if(severity_number >= 17) AS e FROM log_data
      WHERE session_id IN (SELECT session_id FROM active) GROUP BY 1),
m AS (SELECT session_id, count(*) AS n FROM metric_points
      WHERE session_id IN (SELECT session_id FROM active) GROUP BY 1)
SELECT a.session_id, coalesce(s.n, 0), coalesce(l.n, 0), coalesce(m.n, 0),
       coalesce(s.e, 0) + coalesce(l.e, 0)
FROM active a LEFT JOIN s USING (session_id) LEFT JOIN l USING (session_id)
     LEFT JOIN m USING (session_id)
"""

_INSERT_SESSION = (
    "INSERT INTO sessions VALUES (?, ?, ?, ?, make_timestamp_ns(?), make_timestamp_ns(?),"
    " make_timestamp_ns(?), ?, ?, ?, ?, ?::VARCHAR[])"
)
_UPDATE_COUNTS = (
    "UPDATE sessions SET started_at = make_timestamp_ns(?), last_seen_at = make_timestamp_ns(?),"
    " ended_at = make_timestamp_ns(?), span_count = ?, log_count = ?, metric_point_count = ?,"
    " error_count = ? WHERE session_id = ?"
)
_UPDATE_SESSION = _UPDATE_COUNTS.replace(" WHERE", ", services = ?::VARCHAR[] WHERE")


def session_row(s: SessionState) -> list[Any]:
    """A session row's values in the sessions table's column order."""
    return [
        s.session_id,
        s.project,
        s.room,
        s.source,
        s.started_at,
        s.last_seen_at,
        s.ended_at,
        s.span_count,
        s.log_count,
        s.metric_point_count,
        s.error_count,
        list(s.services),
    ]


_LOAD_SESSIONS = (
    "SELECT session_id, project, room, source, epoch_ns(started_at), epoch_ns(last_seen_at),"
    " epoch_ns(ended_at), span_count, log_count, metric_point_count, error_count, services"
    " FROM sessions ORDER BY started_at"
)


_LOAD_JOINED = (
    "SELECT session_id, data->>'service', epoch_ns(min(time)) FROM session_events"
    " WHERE type = 'service.joined' GROUP BY ALL"
)


def read_sessions(con: duckdb.DuckDBPyConnection) -> list[SessionState]:
    """Every session row, oldest first (``last_arrival`` is not stored: 0), with the times of
    its service.joined events (a service without one: the session's start)."""
    joined = {(sid, svc): t for sid, svc, t in con.execute(_LOAD_JOINED).fetchall()}
    out = []
    for r in con.execute(_LOAD_SESSIONS).fetchall():
        services = tuple(r[11] or ())
        times = tuple(joined.get((r[0], svc), r[4]) for svc in services)
        out.append(SessionState(*r[:11], services=services, joined=times))
    return out


def recount_active(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int, int, int]]:
    """(session id, spans, log records, metric points, errors) of each active session."""
    return [tuple(r) for r in con.execute(RECOUNT_SQL).fetchall()]
