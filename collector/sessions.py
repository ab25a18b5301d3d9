"""Session tracking (SPEC 3): explicit and inferred sessions, their counts, lifecycle and events.

The tracker runs on the writer thread. :meth:`SessionTracker.prepare` tags a group of batches and
returns a :class:`SessionPlan` holding the *new* state of every session it touches plus the events
to record; the writer applies the plan in the same transaction as the data, and only once that
transaction committed does :meth:`SessionTracker.commit` adopt the plan's states. ``prepare`` and
``sweep`` never change the tracker, so a failed commit leaves memory and file as they were.

State is one immutable :class:`SessionState` per session, plus, per (project, room), the ids of
its inferred sessions. On start-up it is read back from the ``sessions`` table.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .session_infer import (
    COUNT_FIELD,
    Window,
    batch_deltas,
    fill_session_ids,
    infer,
    session_times,
)
from .store import Store


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


@dataclass
class SessionPlan:
    """Rows to upsert into ``sessions``, events to insert, event times to move."""

    states: dict[str, SessionState] = field(default_factory=dict)
    events: list[tuple[str, str | None, str | None, int, str, str]] = field(default_factory=list)
    retimes: list[tuple[str, str, int]] = field(default_factory=list)  # (id, event type, time)
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
            con.executemany(_INSERT_SESSION, [_session_row(s) for s in new])
        # Rewriting the services list costs DuckDB ~3x a plain update: only when it grew.
        updates = self.updates if self.flushes else {}
        grown = [s for sid, s in updates.items() if sid in self.services_grew]
        same = [s for sid, s in updates.items() if sid not in self.services_grew]
        if grown:
            con.executemany(_UPDATE_SESSION, [[*_session_row(s)[4:], s.session_id] for s in grown])
        if same:
            con.executemany(_UPDATE_COUNTS, [[*_session_row(s)[4:-1], s.session_id] for s in same])
        if self.retimes:
            con.executemany(
                "UPDATE session_events SET time = make_timestamp_ns(?)"
                " WHERE session_id = ? AND type = ?",
                [[t, sid, kind] for sid, kind, t in self.retimes],
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
s AS (SELECT session_id, count(*) AS n, count_if(status_code = 'ERROR') AS e FROM span_data
      WHERE session_id IN (SELECT session_id FROM active) GROUP BY 1),
l AS (SELECT session_id, count(*) AS n, count_if(severity_number >= 17) AS e FROM logs
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


def _session_row(s: SessionState) -> list[Any]:
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


class SessionTracker:
    def __init__(self, idle_timeout: float = 300.0, max_future_skew: float = 300.0):
        self.idle_ns = int(idle_timeout * 1e9)
        self.skew_ns = int(max_future_skew * 1e9)
        self._sessions: dict[str, SessionState] = {}
        self._rooms: dict[tuple[str | None, str | None], list[str]] = {}  # inferred ids per room
        self._active: set[str] = set()
        # Changes to existing session rows not written yet: under sustained load they are
        # written once per sweep instead of with every group commit (an UPDATE costs DuckDB
        # ~0.7 ms, ~10% of ingest at one per commit). Records, events and new sessions are
        # always written with their commit.
        self._pending: dict[str, SessionState] = {}
        self._pending_services: set[str] = set()
        self._flushed_ns = 0  # wall clock of the last plan that wrote the pending changes
        self._store: Store | None = None
        self._loaded_from: object = None

    @classmethod
    def from_settings(cls, settings: Any, store: Store | None = None) -> SessionTracker:
        tracker = cls(
            settings.get("sessions.idle_timeout"), settings.get("sessions.max_future_skew")
        )
        if store is not None:
            tracker.attach(store)
        return tracker

    def attach(self, store: Store) -> None:
        """Load the state from ``store`` and reload it whenever the store is reopened."""
        self._store = store
        self._loaded_from = store.con  # type: ignore[attr-defined]
        self.load(store.cursor())
        self.recount(store.cursor())

    def _sync(self) -> None:
        """After the writer reopened the store (an I/O failure), the file is the truth again:
        a commit that failed half-way may or may not be in it, so read the state back."""
        store = self._store
        if store is not None and store.con is not self._loaded_from:  # type: ignore[attr-defined]
            self._sessions.clear()
            self._rooms.clear()
            self._active.clear()
            self._pending.clear()
            self._pending_services.clear()
            self.attach(store)

    # -- state ----------------------------------------------------------------------------
    def load(self, con: duckdb.DuckDBPyConnection, now_ns: int | None = None) -> None:
        """Rebuild the state from the ``sessions`` table (start-up).

        When records of a still-active session last arrived is not stored; a restarted collector
        counts from ``now_ns`` (the load): an active session gets a full idle period to resume."""
        arrival = time.time_ns() if now_ns is None else now_ns
        try:
            rows = con.execute(
                "SELECT session_id, project, room, source, epoch_ns(started_at),"
                " epoch_ns(last_seen_at), epoch_ns(ended_at), span_count, log_count,"
                " metric_point_count, error_count, services FROM sessions ORDER BY started_at"
            ).fetchall()
        finally:
            con.close()
        states = [
            SessionState(*r[:11], services=tuple(r[11] or ()), last_arrival=arrival) for r in rows
        ]
        self.commit(SessionPlan(states={s.session_id: s for s in states}))

    def recount(self, con: duckdb.DuckDBPyConnection) -> None:
        """Count the records of the active sessions again from the data (start-up): a crash
        may have left a session's row behind its records by the changes still pending."""
        try:
            for sid, spans, logs, points, errors in con.execute(RECOUNT_SQL).fetchall():
                old = self._sessions[sid]
                counts = (spans, logs, points, errors)
                if counts != (
                    old.span_count,
                    old.log_count,
                    old.metric_point_count,
                    old.error_count,
                ):
                    self._pending[sid] = self._sessions[sid] = dataclasses.replace(
                        old,
                        span_count=spans,
                        log_count=logs,
                        metric_point_count=points,
                        error_count=errors,
                    )
        finally:
            con.close()

    def get(self, session_id: str) -> SessionState | None:
        return self._sessions.get(session_id)

    def commit(self, plan: SessionPlan) -> None:
        """Adopt a plan's states; called only after its transaction committed."""
        if plan.flushes:
            self._pending.clear()
            self._pending_services.clear()
            self._flushed_ns = time.time_ns()
        else:
            self._pending.update(plan.updates)
            self._pending_services |= plan.services_grew
        for sid, state in plan.states.items():
            if state.source == "inferred" and sid not in self._sessions:
                self._rooms.setdefault((state.project, state.room), []).append(sid)
            self._sessions[sid] = state
            if state.ended_at is None:
                self._active.add(sid)
            else:
                self._active.discard(sid)

    def forget(self, session_ids: set[str]) -> None:
        """Drop sessions whose rows were deleted (retention); writer thread only."""
        for sid in session_ids:
            state = self._sessions.pop(sid, None)
            self._active.discard(sid)
            self._pending.pop(sid, None)
            if state is not None and state.source == "inferred":
                ids = self._rooms.get((state.project, state.room))
                if ids is not None and sid in ids:
                    ids.remove(sid)

    def _windows(self, project: str | None, room: str) -> list[Window]:
        return [
            Window(sid, s.started_at, s.last_seen_at)
            for sid in self._rooms.get((project, room), ())
            for s in (self._sessions[sid],)
        ]

    # -- the write path -------------------------------------------------------------------
    def prepare(
        self, tables: Mapping[str, list[pa.Table]], now_ns: int, flush: bool = True
    ) -> tuple[dict[str, list[pa.Table]], SessionPlan | None]:
        """Fill inferred session ids and plan the session rows/events for one group commit.

        ``flush`` False (more data is queued): changes to existing session rows wait for a
        later flushing plan (the next idle commit or sweep) instead of being written now."""
        self._sync()
        merged: dict[str, pa.Table] = {}
        for signal, batches in tables.items():
            batches = [b for b in batches if b.num_rows]
            if batches:
                merged[signal] = batches[0] if len(batches) == 1 else pa.concat_tables(batches)
        if not merged:
            return dict(tables), None
        signals = list(merged)
        times = [session_times(merged[s], s, self.skew_ns) for s in signals]
        masks, projects, rooms = [], [], []
        for s in signals:
            t = merged[s]
            mask = pc.and_(pc.is_valid(t["room"]), pc.is_null(t["session_id"]))
            masks.append(mask.to_numpy(zero_copy_only=False))
            projects.append(pc.filter(t["project"], mask).combine_chunks())
            rooms.append(pc.filter(t["room"], mask).combine_chunks())
        inference = infer(projects, rooms, times, masks, self._windows, self.idle_ns)
        if inference.ids:
            ids = pa.array(inference.ids, pa.string())
            for s, codes in zip(signals, inference.codes, strict=True):
                merged[s] = fill_session_ids(merged[s], codes, ids)
        tagged = {s: (merged[s], t) for s, t in zip(signals, times, strict=True)}
        plan = self._plan(batch_deltas(tagged), set(inference.new), now_ns)
        if plan is not None:
            self._schedule(plan, flush, now_ns)
        out = {s: [merged[s]] for s in signals}
        return out, plan

    def _schedule(self, plan: SessionPlan, flush: bool, now_ns: int) -> None:
        """Which existing rows ``plan`` writes: its own changes plus the pending ones, or none."""
        flush = flush or now_ns - self._flushed_ns >= FLUSH_NS
        plan.flushes = flush
        if flush:
            plan.updates = {**self._pending, **plan.updates}
            plan.services_grew |= self._pending_services

    def _plan(self, deltas: dict, inferred_new: set[str], now_ns: int) -> SessionPlan | None:
        if not deltas:
            return None
        plan = SessionPlan()
        for sid, d in deltas.items():
            old = self._sessions.get(sid)
            counts = {f: d.counts.get(f, 0) for f in COUNT_FIELD.values()}
            if old is None:
                state = SessionState(
                    sid,
                    d.project,
                    d.room,
                    "inferred" if sid in inferred_new else "explicit",
                    d.first,
                    d.last,
                    None,
                    error_count=d.errors,
                    last_arrival=now_ns,
                    **counts,
                )
                plan.created.add(sid)
                plan.event(state, state.started_at, "session.started", {"source": state.source})
            else:
                last = max(old.last_seen_at, d.last)
                state = dataclasses.replace(
                    old,
                    started_at=min(old.started_at, d.first),
                    last_seen_at=last,
                    ended_at=None if old.ended_at is None else last,
                    error_count=old.error_count + d.errors,
                    last_arrival=now_ns,
                    **{f: getattr(old, f) + n for f, n in counts.items()},
                )
                if state.started_at != old.started_at:
                    plan.retimes.append((sid, "session.started", state.started_at))
                if old.ended_at is not None:
                    n = sum(counts.values())
                    plan.event(state, d.first, "session.late_data", {"records": n})
                    if state.ended_at != old.ended_at:
                        plan.retimes.append((sid, "session.ended", state.last_seen_at))
            joined = sorted(
                (t, name) for name, t in d.services.items() if name not in state.services
            )
            if joined:
                state = dataclasses.replace(
                    state, services=state.services + tuple(name for _, name in joined)
                )
                if sid not in plan.created:
                    plan.services_grew.add(sid)
                for t, name in joined:
                    plan.event(state, t, "service.joined", {"service": name})
            plan.states[sid] = state
            if sid not in plan.created:
                plan.updates[sid] = state
        return plan

    # -- lifecycle ------------------------------------------------------------------------
    def sweep(self, now_ns: int) -> SessionPlan | None:
        """End every active session no record arrived for in the last ``idle`` seconds."""
        self._sync()
        plan = SessionPlan()
        deadline = now_ns - self.idle_ns
        for sid in self._active:
            s = self._sessions[sid]
            if s.last_arrival <= deadline:
                ended = dataclasses.replace(s, ended_at=s.last_seen_at)
                plan.states[sid] = ended
                plan.event(ended, ended.last_seen_at, "session.ended", {"reason": "idle"})
        plan.updates = {**self._pending, **plan.states}  # and write what was pending
        plan.services_grew = set(self._pending_services)
        return plan if plan.updates else None

    @property
    def pending(self) -> bool:
        """Changes to session rows wait for a flush."""
        return bool(self._pending)

    def flush(self) -> SessionPlan | None:
        """A plan that writes the pending changes to session rows (the writer, when idle)."""
        if not self._pending:
            return None
        return SessionPlan(updates=dict(self._pending), services_grew=set(self._pending_services))

    def active(self) -> list[SessionState]:
        return [self._sessions[sid] for sid in self._active]
