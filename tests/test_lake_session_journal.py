"""The session journal of a lake's replicas (collector/store/lake_session_journal.py): a turn
adopts the others' session rows from it instead of DuckLake's change feed, with the same
outcome, and falls back to the change feed whenever the journal lacks a commit."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from conftest import lake_settings, make_settings
from otlp_factory import trace_request
from test_ducklake import _alternate, _session_outcome
from test_sessions import post

from collector.store import (
    DuckLakeStore,
    SessionPlan,
    SessionState,
    create_store,
    lake_session_journal,
)
from collector.store.lake_connect import LAKE, LakeConfig, connect
from collector.store.lake_session_journal import JOURNAL
from collector.store.lake_sessions import changed_sessions

S = 1_000_000_000
LAKE_ONLY = pytest.mark.parametrize("backend", ["ducklake"], indirect=True)


def _services(targets: list[Any], start: int) -> None:
    """An explicit session two services join, one of them with a record earlier than its
    first (a parent span exported after its children: service.joined and session.started
    move), sent to ``targets`` in turn, then the room's burst of _alternate."""
    requests = [
        trace_request(2, room="den", session="talk-2", service="agent", start_ns=start + 5 * S),
        trace_request(2, room="den", session="talk-2", service="planner", start_ns=start + 8 * S),
        trace_request(1, room="den", session="talk-2", service="planner", start_ns=start + 6 * S),
        trace_request(1, room="den", session="talk-2", service="agent", start_ns=start + S),
        trace_request(3, room="den", session="talk-2", service="tools", start_ns=start + 9 * S),
    ]
    for i, request in enumerate(requests):
        post(targets[i % len(targets)], request)
    _alternate(targets, start)


def _stores(*collectors: Any) -> list[DuckLakeStore]:
    stores = [c.collector.store for c in collectors]
    assert all(isinstance(s, DuckLakeStore) for s in stores)
    return stores


def _one_collector(start_collector: Any, tmp_path: Path, start: int) -> list[tuple]:
    one = start_collector(db=tmp_path / "one.duckdb", **{"store.backend": "duckdb"})
    _services([one], start)
    return _session_outcome(one.query)


@LAKE_ONLY
def test_replicas_adopt_each_others_sessions_from_the_journal(start_collector, tmp_path) -> None:
    start = time.time_ns() - 3_600 * S
    a, b = start_collector(), start_collector()
    _services([a, b], start)
    lake = _session_outcome(a.query)
    assert _session_outcome(b.query) == lake
    assert lake == _one_collector(start_collector, tmp_path, start)
    for store in _stores(a, b):
        assert store.stats["adopted"] > 0  # each took the other's rows at its turns ...
        assert store.stats["feed_reads"] == 0  # ... from the journal, never the change feed


@LAKE_ONLY
def test_a_replica_writing_no_journal_is_read_from_the_change_feed(
    start_collector, tmp_path, monkeypatch
) -> None:
    """A replica that writes no journal rows (an older roomscope): the others read its
    commits' session rows from DuckLake's change feed, with the same outcome."""
    start = time.time_ns() - 3_600 * S
    a, b = start_collector(), start_collector()
    store_a, store_b = _stores(a, b)
    monkeypatch.setattr(store_b._session_lock, "journal", lambda tag, plan: None)
    _services([a, b], start)
    lake = _session_outcome(a.query)
    assert _session_outcome(b.query) == lake
    assert lake == _one_collector(start_collector, tmp_path, start)
    assert store_a.stats["feed_reads"] > 0 and store_b.stats["feed_reads"] == 0


def _plan(state: SessionState, created: bool) -> SessionPlan:
    plan = SessionPlan(states={state.session_id: state})
    if created:
        plan.created.add(state.session_id)
        for service, t in zip(state.services, state.joined, strict=True):
            plan.event(state, t, "service.joined", {"service": service})
    else:
        plan.updates[state.session_id] = state
    return plan


def _commit(store: DuckLakeStore, plan: SessionPlan) -> None:
    with store.session_turn():
        store.append({}, plan)


@contextlib.contextmanager
def _two_replicas(settings: dict, tmp_path) -> Iterator[tuple[DuckLakeStore, DuckLakeStore]]:
    """Two lake stores on one lake (``settings``), opened, closed at the end."""
    a, b = (create_store(make_settings(tmp_path / f"{n}.duckdb", **settings)) for n in "ab")
    assert isinstance(a, DuckLakeStore) and isinstance(b, DuckLakeStore)
    a.open()
    b.open()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _same(states: list[SessionState] | None) -> set[SessionState]:
    assert states is not None
    return {dataclasses.replace(s, last_arrival=0) for s in states}


def test_the_journal_holds_what_landed_and_says_when_a_commit_is_missing(
    postgres, tmp_path
) -> None:
    settings = lake_settings(postgres, tmp_path / "lake")
    with _two_replicas(settings, tmp_path) as (a, b):
        before = b._seen
        s1 = SessionState(
            "s1", "acme", "hall", "explicit", 1 * S, 2 * S, None, span_count=3,
            services=("agent", "tools"), joined=(1 * S, 2 * S),
        )  # fmt: skip
        s2 = SessionState("s2", "acme", "d\x00n", "inferred", 5 * S, 6 * S, None, log_count=1)
        _commit(a, _plan(s1, created=True))
        _commit(a, _plan(s2, created=True))
        later = dataclasses.replace(s1, last_seen_at=9 * S, span_count=7, ended_at=9 * S)
        _commit(a, _plan(later, created=False))
        upto = (
            b._session_lock._connection()
            .execute("SELECT max(snapshot_id) FROM ducklake_snapshot_changes")
            .fetchone()[0]
        )
        # A journal row whose commit never landed (its tag is no snapshot's) is not read.
        with psycopg.connect(settings["store.catalog"], autocommit=True) as pg:
            ghost = ["ghost", "acme", "hall", "explicit", S, S, None, 1, 0, 0, 0, [], []]
            pg.execute(
                f"INSERT INTO {JOURNAL} (tag, states) VALUES (%s, %s)",
                [uuid.uuid4().hex, json.dumps([ghost])],
            )
        journaled = b._session_lock.journaled(b.replica, before, upto)
        assert _same(journaled) == {later, s2}  # each session's latest row, joined times too
        feed = changed_sessions(b.con, LAKE, before, upto)
        assert _same(journaled) == _same(feed)
        assert b._session_lock.journaled(a.replica, before, upto) == []  # a's own: none
        # A commit writing session rows without a journal row: the journal cannot answer.
        a.execute(
            lambda con: con.execute(
                "INSERT INTO sessions (session_id, project, room, source, started_at,"
                " last_seen_at, span_count, log_count, metric_point_count, error_count,"
                " services) VALUES ('s3', 'acme', 'hall', 'explicit', make_timestamp_ns(1),"
                " make_timestamp_ns(2), 1, 0, 0, 0, ['agent'])"
            )
        )
        with b.session_turn() as changed:  # so the turn reads the change feed
            assert {s.session_id for s in changed} == {"s1", "s2", "s3"}
        assert b.stats["feed_reads"] == 1


def test_old_journal_rows_are_pruned_and_then_read_from_the_change_feed(
    postgres, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(lake_session_journal, "PRUNE_EVERY", 2)
    settings = lake_settings(postgres, tmp_path / "lake")
    with _two_replicas(settings, tmp_path) as (a, b):
        s1 = SessionState("s1", "acme", "hall", "explicit", S, 2 * S, None, span_count=1)
        _commit(a, _plan(s1, created=True))
        with psycopg.connect(settings["store.catalog"], autocommit=True) as pg:
            age = f"UPDATE {JOURNAL} SET written = now() - %s::interval"
            pg.execute(age, [f"{lake_session_journal.KEEP_SECONDS + 60} seconds"])
            s2 = dataclasses.replace(s1, session_id="s2")
            _commit(a, _plan(s2, created=True))  # the second write: old rows deleted
            assert pg.execute(f"SELECT count(*) FROM {JOURNAL}").fetchone() == (1,)
        with b.session_turn() as changed:
            assert {s.session_id for s in changed} == {"s1", "s2"}
        assert b.stats["feed_reads"] == 1


def test_ducklake_refuses_a_stale_delete_after_any_insert_into_the_table(postgres, tmp_path):
    """Why a session turn holds the lock from its transaction's start, records included
    (docs/scale-out.md): a transaction that deletes from a table (a session row's update)
    cannot commit once another inserted into that table after its snapshot — whichever rows
    or files — so the session rows' writers cannot overlap, by room or otherwise, and a
    transaction begun before the lock (to write the records outside it) would always conflict.
    Should a DuckLake release merge such commits, this test fails: the lock could then shrink."""
    con = connect(LakeConfig(postgres.create_database("conflicts"), str(tmp_path)), "256MB")
    try:
        con.execute("CREATE TABLE lake.sessions AS SELECT range AS i FROM range(100)")
        con.execute("CREATE TABLE lake.span_data (i BIGINT)")
        mine, other = con.cursor(), con.cursor()
        mine.begin()
        mine.execute("INSERT INTO lake.span_data VALUES (1)")  # the records, before the lock
        other.execute("INSERT INTO lake.sessions VALUES (1000)")  # another room's new session
        mine.execute("DELETE FROM lake.sessions WHERE i = 5")  # this room's session, updated
        with pytest.raises(duckdb.TransactionException, match=r"(?i)conflict"):
            mine.commit()
    finally:
        con.close()
