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
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from .session_infer import COUNT_FIELD, BatchSessions, Window, assign, summarize
from .store import FLUSH_NS, Recount, SessionPlan, SessionState, Store

__all__ = ["SessionPlan", "SessionState", "SessionTracker"]


class SessionTracker:
    def __init__(self, idle_timeout: float, max_future_skew: float):
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
        self._generation = 0  # the store's generation the state was read from

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
        self._generation = store.generation
        self.load(store.load_sessions())
        self.recount(store.recount_active())

    def _sync(self) -> None:
        """After the writer reopened the store (an I/O failure), the file is the truth again:
        a commit that failed half-way may or may not be in it, so read the state back."""
        store = self._store
        if store is not None and store.generation != self._generation:
            self._sessions.clear()
            self._rooms.clear()
            self._active.clear()
            self._pending.clear()
            self._pending_services.clear()
            self.attach(store)

    # -- state ----------------------------------------------------------------------------
    def load(self, stored: list[SessionState], now_ns: int | None = None) -> None:
        """Adopt the stored session rows (start-up).

        When records of a still-active session last arrived is not stored; a restarted collector
        counts from ``now_ns`` (the load): an active session gets a full idle period to resume."""
        arrival = time.time_ns() if now_ns is None else now_ns
        states = [dataclasses.replace(s, last_arrival=arrival) for s in stored]
        self.commit(SessionPlan(states={s.session_id: s for s in states}))

    def adopt(self, changed: list[SessionState]) -> None:
        """Adopt the session rows other collectors of a shared store wrote (a lake's replicas;
        Store.session_turn), before planning the next commit."""
        if changed:
            self.commit(SessionPlan(states={s.session_id: s for s in changed}))

    def recount(self, counted: list[Recount]) -> None:
        """Adopt the records of the active sessions counted again from the data (start-up): a
        crash may have left a session's row behind its records by the changes still pending."""
        for sid, spans, logs, points, errors in counted:
            old = self._sessions[sid]
            counts = (spans, logs, points, errors)
            if counts != (old.span_count, old.log_count, old.metric_point_count, old.error_count):
                self._pending[sid] = self._sessions[sid] = dataclasses.replace(
                    old,
                    span_count=spans,
                    log_count=logs,
                    metric_point_count=points,
                    error_count=errors,
                )

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
    def summarize(self, table: pa.Table, signal: str) -> BatchSessions:
        """The tracker-independent part of tagging one batch (thread-safe: reads only settings).

        The Ingestor calls it where it decodes the request (the event loop or a decode thread),
        so that the writer thread, which every record passes, only matches bursts to sessions."""
        return summarize(table, signal, self.skew_ns, self.idle_ns)

    def prepare(
        self,
        tables: Mapping[str, list[pa.Table]],
        now_ns: int,
        flush: bool = True,
        summaries: Mapping[str, list[BatchSessions | None]] | None = None,
    ) -> tuple[dict[str, list[pa.Table]], SessionPlan | None]:
        """Fill inferred session ids and plan the session rows/events for one group commit.

        ``summaries`` (parallel to ``tables``) are the batches' :meth:`summarize` results where
        already computed. ``flush`` False (more data is queued): changes to existing session
        rows wait for a later flushing plan (the next idle commit or sweep)."""
        self._sync()
        batches: list[tuple[str, pa.Table, BatchSessions]] = []
        for signal, group in tables.items():
            known = (summaries or {}).get(signal) or [None] * len(group)
            for table, summary in zip(group, known, strict=True):
                if table.num_rows:
                    batches.append((signal, table, summary or self.summarize(table, signal)))
        if not batches:
            return dict(tables), None
        done = assign([(t, b) for _, t, b in batches], self._windows, self.idle_ns)
        plan = self._plan(done.deltas, set(done.new), now_ns)
        if plan is not None:
            self._schedule(plan, flush, now_ns)
        out: dict[str, list[pa.Table]] = {}
        for (signal, _, _), table in zip(batches, done.tables, strict=True):
            out.setdefault(signal, []).append(table)
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
                    plan.retimes.append((sid, "session.started", state.started_at, None))
                if old.ended_at is not None:
                    n = sum(counts.values())
                    plan.event(state, d.first, "session.late_data", {"records": n})
                    if state.ended_at != old.ended_at:
                        plan.retimes.append((sid, "session.ended", state.last_seen_at, None))
            state = self._services(plan, state, d.services)
            plan.states[sid] = state
            if sid not in plan.created:
                plan.updates[sid] = state
        return plan

    @staticmethod
    def _services(plan: SessionPlan, state: SessionState, firsts: dict[str, int]) -> SessionState:
        """``state`` with the services of some new records (service → its first record's time):
        a new service joins (a service.joined event at that time); a known one whose record is
        earlier than its service.joined event (a parent span exported after its children) moves
        the event there, as an early record arriving late moves session.started."""
        times = state.joined
        if len(times) != len(state.services):  # not known: taken as the session's start
            times = (state.started_at,) * len(state.services)
        known = dict(zip(state.services, times, strict=True))
        joined = sorted((t, name) for name, t in firsts.items() if name not in known)
        earlier = {name: t for name, t in firsts.items() if name in known and t < known[name]}
        if not joined and not earlier:
            return state
        for name, t in earlier.items():
            plan.retimes.append((state.session_id, "service.joined", t, name))
        state = dataclasses.replace(
            state,
            services=state.services + tuple(name for _, name in joined),
            joined=tuple(earlier.get(name, t) for name, t in known.items())
            + tuple(t for t, _ in joined),
        )
        if joined and state.session_id not in plan.created:
            plan.services_grew.add(state.session_id)
        for t, name in joined:
            plan.event(state, t, "service.joined", {"service": name})
        return state

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
