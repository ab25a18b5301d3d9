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
from otlp_factory import kv, trace_request

from collector.decode import flatten
from collector.session_infer import _constant, session_times, summarize, summarize_rows

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
    fast = summarize(table, signal, 300 * S, IDLE)
    slow = summarize_rows(table, signal, times, IDLE)
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
