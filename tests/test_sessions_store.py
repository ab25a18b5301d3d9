"""The session tracker with a store and no collector: a failed commit, a store reopened after
an error, and session-row changes left pending under load (written by a later flush or the
sweep; after a crash, start-up counts the active sessions' records again)."""

from __future__ import annotations

import time

import pytest
from conftest import make_store, make_tagger, make_tracker
from test_sessions import S, spans

from collector.decode import flatten
from query.library.filters import SpanFilter
from query.library.traces import session_spans


def test_a_failed_commit_leaves_the_tracker_as_it_was(tmp_path):
    store = make_store(tmp_path / "s.duckdb")
    store.open()
    tracker = make_tracker(idle_timeout=300)
    batch = flatten("traces", spans(8, "lobby", time.time_ns()), make_tagger()).table
    tables, plan = tracker.prepare({"spans": [batch]}, time.time_ns())
    assert plan is not None

    apply = plan.apply

    def boom(con):
        apply(con)
        raise RuntimeError("disk full")

    plan.apply = boom  # the session rows fail after the records are in the transaction
    with pytest.raises(RuntimeError):
        store.append(tables, plan)
    assert tracker.active() == [] and store.cursor().execute(
        "SELECT count(*) FROM sessions"
    ).fetchall() == [(0,)]
    tables, plan = tracker.prepare({"spans": [batch]}, time.time_ns())
    store.append(tables, plan)
    tracker.commit(plan)
    (s,) = tracker.active()
    assert s.span_count == 8
    assert store.cursor().execute("SELECT span_count FROM sessions").fetchall() == [(8,)]
    store.close()


def test_after_a_store_reopen_the_tracker_reads_the_file_again(tmp_path):
    """A commit that raised but reached the file (WAL written, error reported) must not be lost
    from the counts: once the writer reopens the store, the tracker reloads from it."""
    store = make_store(tmp_path / "s.duckdb")
    store.open()
    tracker = make_tracker(idle_timeout=300)
    tracker.attach(store)
    t0 = time.time_ns() - 60 * S
    first = flatten("traces", spans(8, "lobby", t0), make_tagger()).table
    tables, plan = tracker.prepare({"spans": [first]}, time.time_ns())
    store.append(tables, plan)  # committed, but the writer saw an error: no tracker.commit
    store.reopen()
    second = flatten("traces", spans(4, "lobby", t0 + S, seed=5), make_tagger()).table
    tables, plan = tracker.prepare({"spans": [second]}, time.time_ns())
    store.append(tables, plan)
    tracker.commit(plan)
    cur = store.cursor()
    assert cur.execute("SELECT span_count FROM sessions").fetchall() == [(12,)]
    assert cur.execute("SELECT count(DISTINCT session_id) FROM spans").fetchall() == [(1,)]
    cur.close()
    store.close()


def test_under_load_session_rows_are_written_by_a_later_flush_and_a_crash_recounts(tmp_path):
    """With more data queued, a group commit leaves changes to existing session rows pending
    (records, events and new sessions are written at once); a flushing commit or the sweep writes
    them. After a crash with changes pending, start-up counts the active sessions' records again."""
    store = make_store(tmp_path / "s.duckdb")
    store.open()
    tracker = make_tracker(idle_timeout=300)
    tracker.attach(store)
    t0 = time.time_ns() - 60 * S

    def commit(seed: int, flush: bool) -> None:
        batch = flatten("traces", spans(8, "lobby", t0 + seed * S, seed=seed), make_tagger()).table
        tables, plan = tracker.prepare({"spans": [batch]}, time.time_ns(), flush=flush)
        store.append(tables, plan)
        tracker.commit(plan)

    def row() -> list[tuple]:
        return store.cursor().execute("SELECT span_count FROM sessions").fetchall()

    commit(0, flush=False)  # a new session: its row is written now
    assert row() == [(8,)]
    commit(1, flush=False)
    commit(2, flush=False)
    assert row() == [(8,)] and tracker.active()[0].span_count == 24
    commit(3, flush=True)
    assert row() == [(32,)]
    # once the row is written, reads of the session (pruned by its window) see every record
    sid = tracker.active()[0].session_id
    assert len(session_spans(store.cursor(), sid, SpanFilter(), 100).records) == 32
    commit(4, flush=False)
    assert row() == [(32,)]
    plan = tracker.sweep(time.time_ns())  # nothing idle yet, but the pending change goes out
    store.append({}, plan)
    tracker.commit(plan)
    assert row() == [(40,)]

    commit(5, flush=False)
    store.close()  # "crash": the tracker's pending change is lost with the process
    store = make_store(tmp_path / "s.duckdb")
    store.open()
    assert row() == [(40,)]
    tracker = make_tracker(idle_timeout=300)
    tracker.attach(store)
    assert tracker.active()[0].span_count == 48
    plan = tracker.sweep(time.time_ns())
    store.append({}, plan)
    tracker.commit(plan)
    assert row() == [(48,)]
    store.close()
