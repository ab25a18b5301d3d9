"""Inference properties, on the tracker alone: however records are batched and ordered, each
inferred session is one idle-connected run of its room's records, and the counts add up."""

from __future__ import annotations

import itertools
import random
import time

from conftest import make_tagger, make_tracker
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_factory import kv, trace_request

from collector.decode import flatten
from collector.session_infer import (
    _constant,
    session_ends,
    session_times,
    summarize,
    summarize_rows,
)

S = 1_000_000_000
IDLE = 300 * S
NOW = time.time_ns()


def logs_table(records: list[tuple[str, int]]):
    """Log records (room, time) in one request, one resource per record, in the given order."""
    req = ExportLogsServiceRequest()
    for room, t in records:
        rl = req.resource_logs.add()
        rl.resource.attributes.extend([kv("room", room), kv("service.name", "svc")])
        rl.scope_logs.add().log_records.add(time_unix_nano=t).body.string_value = "x"
    return flatten("logs", req, make_tagger(), received_ns=NOW).table


def spans_table(records: list[tuple[str, int, int]]):
    """Spans (room, start, duration) in one request, one resource per span, in the given order."""
    req = ExportTraceServiceRequest()
    for i, (room, t, duration) in enumerate(records):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([kv("room", room), kv("service.name", "svc")])
        rs.scope_spans.add().spans.add(
            trace_id=(i + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name="work",
            start_time_unix_nano=t,
            end_time_unix_nano=t + duration,
        )
    return flatten("traces", req, make_tagger(), received_ns=NOW).table


def clusters(times: list[int]) -> list[list[int]]:
    """The reference: a room's sorted times cut where the gap exceeds idle."""
    out: list[list[int]] = []
    for t in sorted(times):
        if out and t - out[-1][-1] <= IDLE:
            out[-1].append(t)
        else:
            out.append([t])
    return out


record = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.integers(NOW - 4 * 3600 * S, NOW - 1).map(lambda t: t - t % S),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(record, min_size=1, max_size=60), st.integers(1, 5), st.randoms())
def test_sessions_are_idle_connected_runs_whatever_the_batching(records, n_batches, rnd):
    tracker = make_tracker(idle_timeout=IDLE / S)
    shuffled = records[:]
    rnd.shuffle(shuffled)
    cuts = sorted(rnd.sample(range(1, len(shuffled)), min(n_batches - 1, len(shuffled) - 1)))
    assigned: list[tuple[str, int, str]] = []
    for part in (shuffled[i:j] for i, j in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)):
        tables, plan = tracker.prepare({"logs": [logs_table(part)]}, NOW)
        tracker.commit(plan)
        table = tables["logs"][0]
        assigned += zip(
            table["room"].to_pylist(),
            [int(t.value) for t in table["time"]],
            table["session_id"].to_pylist(),
            strict=True,
        )
    assert all(sid is not None for _, _, sid in assigned)
    sessions = {s.session_id: s for s in tracker.active()}
    for sid, s in sessions.items():
        mine = sorted(t for _, t, x in assigned if x == sid)
        assert s.log_count == len(mine) and (s.started_at, s.last_seen_at) == (mine[0], mine[-1])
        assert all(b - a <= IDLE for a, b in itertools.pairwise(mine))  # one run
        assert {room for room, _, x in assigned if x == sid} == {s.room}
    for room in {r for r, _ in records}:
        reference = clusters([t for r, t in records if r == room])
        mine = {sid for r, _, sid in assigned if r == room}
        assert len(mine) >= len(reference)  # a session never spans two reference runs
        if n_batches == 1:
            assert len(mine) == len(reference)


def interval_runs(extents: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The reference for spans: extents (start, end) sorted by start, cut where the next one
    starts more than idle after every earlier one ended."""
    out: list[list[tuple[int, int]]] = []
    for start, end in sorted(extents):
        if out and start - max(e for _, e in out[-1]) <= IDLE:
            out[-1].append((start, end))
        else:
            out.append([(start, end)])
    return out


span = st.tuples(
    st.sampled_from(["a", "b"]),
    st.integers(NOW - 4 * 3600 * S, NOW - 3600 * S).map(lambda t: t - t % S),
    st.sampled_from([0, S, 200 * S, 400 * S, 900 * S]),  # up to 3 idle periods long
)


@settings(max_examples=60, deadline=None)
@given(st.lists(span, min_size=1, max_size=40), st.integers(1, 4), st.randoms())
def test_span_sessions_cover_span_ends_and_are_connected_runs_whatever_the_batching(
    records, n_batches, rnd
):
    """SPEC 3: started_at/last_seen_at cover span end times; the idle gap that splits two
    inferred sessions runs from the end of one run's spans to the next span's start."""
    tracker = make_tracker(idle_timeout=IDLE / S)
    shuffled = records[:]
    rnd.shuffle(shuffled)
    cuts = sorted(rnd.sample(range(1, len(shuffled)), min(n_batches - 1, len(shuffled) - 1)))
    assigned: list[tuple[str, int, int, str]] = []
    for part in (shuffled[i:j] for i, j in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)):
        tables, plan = tracker.prepare({"spans": [spans_table(part)]}, NOW)
        tracker.commit(plan)
        table = tables["spans"][0]
        starts = [int(t.value) for t in table["start_time"]]
        assigned += zip(
            table["room"].to_pylist(),
            starts,
            [t + d for t, d in zip(starts, table["duration_ns"].to_pylist(), strict=True)],
            table["session_id"].to_pylist(),
            strict=True,
        )
    run_of = {}  # (room, start, end) → index of its reference run
    for room in {r for r, _, _ in records}:
        reference = interval_runs([(t, t + d) for r, t, d in records if r == room])
        run_of.update({(room, *x): i for i, run in enumerate(reference) for x in run})
        mine = {sid for r, _, _, sid in assigned if r == room}
        assert len(mine) >= len(reference)
        if n_batches == 1:
            assert len(mine) == len(reference)
    for s in tracker.active():
        mine = [(r, t, e) for r, t, e, x in assigned if x == s.session_id]
        assert s.span_count == len(mine)
        assert (s.started_at, s.last_seen_at) == (min(mine)[1], max(e for _, _, e in mine))
        assert len({run_of[x] for x in mine}) == 1  # never spans two reference runs
        if n_batches == 1:
            assert len(interval_runs([x[1:] for x in mine])) == 1  # one run


def test_a_long_span_keeps_its_session_open_until_it_ends():
    """A 10-minute root span and its children: one session that lasts as long as the root,
    whichever arrives first; a span 4 minutes after the root ended still joins it (idle 300 s),
    one 15 minutes after starts a new session."""
    t0 = NOW - 3600 * S
    root = ("a", t0, 600 * S)
    children = [("a", t0 + k * S, S) for k in (100, 340, 590)]
    for batches in ([children, [root]], [[root], children], [[*children, root]]):
        tracker = make_tracker(idle_timeout=IDLE / S)
        for part in [*batches, [("a", t0 + 840 * S, S)], [("a", t0 + 1500 * S, S)]]:
            _tables, plan = tracker.prepare({"spans": [spans_table(part)]}, NOW)
            tracker.commit(plan)
        got = sorted((s.started_at, s.last_seen_at, s.span_count) for s in tracker.active())
        assert got == [(t0, t0 + 841 * S, 5), (t0 + 1500 * S, t0 + 1501 * S, 1)], batches


def test_one_batch_in_any_order_gives_the_reference_sessions():
    rnd = random.Random(7)
    times = [NOW - k * 100 * S for k in (0, 1, 2, 10, 11, 30)]  # runs: {0,1,2}, {10,11}, {30}
    rnd.shuffle(times)
    tracker = make_tracker(idle_timeout=IDLE / S)
    _tables, plan = tracker.prepare({"logs": [logs_table([("a", t) for t in times])]}, NOW)
    tracker.commit(plan)
    assert sorted(s.log_count for s in tracker.active()) == [1, 2, 3]


def test_a_burst_between_two_sessions_splits_and_later_bursts_keep_their_ids():
    """A burst touching two sessions' windows sends each record to the nearer one; the bursts
    after it in the same batch (other rooms) still get their own ids (regression: the split's
    extra ids once shifted theirs)."""
    t0 = NOW - 3600 * S
    tracker = make_tracker(idle_timeout=IDLE / S)
    for t in (t0, t0 + 700 * S):  # two sessions of room a, 700 s apart
        _tables, plan = tracker.prepare({"logs": [logs_table([("a", t)])]}, NOW)
        tracker.commit(plan)
    (early,) = [s.session_id for s in tracker.active() if s.started_at == t0]
    (late,) = [s.session_id for s in tracker.active() if s.started_at == t0 + 700 * S]
    batch = [("a", t0 + 250 * S), ("a", t0 + 450 * S), ("b", t0 + 100 * S)]
    tables, plan = tracker.prepare({"logs": [logs_table(batch)]}, NOW)
    tracker.commit(plan)
    ids = tables["logs"][0]["session_id"].to_pylist()
    assert ids[:2] == [early, late]
    assert ids[2] not in (early, late)
    counts = {s.session_id: s.log_count for s in tracker.active()}
    assert counts == {early: 2, late: 2, ids[2]: 1}


def _summaries_agree(table, signal: str) -> None:
    times = session_times(table, signal, 300 * S)
    ends = session_ends(table, signal, times, 300 * S)
    fast = summarize(table, signal, 300 * S, IDLE)
    slow = summarize_rows(table, signal, times, IDLE, ends)
    assert fast.explicit == slow.explicit
    assert (fast.burst_of_row == slow.burst_of_row).all()
    assert [(b.project, b.room, b.delta, b.rows.tolist()) for b in fast.bursts] == [
        (b.project, b.room, b.delta, b.rows.tolist()) for b in slow.bursts
    ]


def test_uniform_batches_summarize_like_the_general_path():
    """One resource per request (the usual case) takes a numpy-only path; same result."""
    rnd = random.Random(3)
    times = [NOW - rnd.randrange(3 * 3600) * S for _ in range(40)]
    _summaries_agree(logs_table([("a", t) for t in times]), "logs")  # bursts of room a
    spans = lambda **kw: flatten("traces", trace_request(64, **kw), make_tagger()).table  # noqa: E731
    _summaries_agree(spans(session="s-1", start_ns=NOW - 10**9), "spans")  # explicit id
    _summaries_agree(spans(room=None, start_ns=NOW - 10**9), "spans")  # no room: nothing
    _summaries_agree(spans(project=None, start_ns=NOW - 10**9, seed=5), "spans")
    mixed = logs_table([("a", NOW - 10 * S), ("b", NOW - 5 * S)])
    assert not _constant(mixed["room"])[0]  # two rooms: the general path
