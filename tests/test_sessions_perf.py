"""Ingest cost of session tracking: pre-decoded span batches through the Writer, tracker on/off.

Run ``python tests/test_sessions_perf.py [--batches 200] [--spans 512] [--rounds 2]`` for the
figures; the pytest test below only checks, on a small load, that the tracked run tags everything.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import make_store, make_tagger, make_tracker, make_writer
from otlp_factory import trace_request

from collector.columns import Decoded
from collector.decode import flatten
from collector.sessions import SessionTracker

S = 1_000_000_000


def decoded_batches(n_batches: int, n_spans: int, rooms: int = 8) -> list[Decoded]:
    """Inferred-session traffic (no explicit ids): ``rooms`` rooms, batches a second apart."""
    t0 = time.time_ns() - 3600 * S
    tagger = make_tagger()
    return [
        flatten(
            "traces",
            trace_request(n_spans, room=f"room-{i % rooms}", start_ns=t0 + i * S, seed=i),
            tagger,
        )
        for i in range(n_batches)
    ]


class TimedTracker:
    """Delegates to a SessionTracker and adds up the time spent in it (prepare, apply, commit)."""

    def __init__(self, tracker: SessionTracker):
        self.tracker = tracker
        self.seconds = 0.0

    def prepare(self, tables, now_ns, flush=True):
        start = time.perf_counter()
        tables, plan = self.tracker.prepare(tables, now_ns, flush)
        self.seconds += time.perf_counter() - start
        return tables, (None if plan is None else _TimedPlan(plan, self))

    def commit(self, plan) -> None:
        start = time.perf_counter()
        self.tracker.commit(plan.plan)
        self.seconds += time.perf_counter() - start

    def sweep(self, now_ns):
        return None

    @property
    def pending(self) -> bool:
        return self.tracker.pending

    def flush(self):
        plan = self.tracker.flush()
        return None if plan is None else _TimedPlan(plan, self)


class _TimedPlan:
    def __init__(self, plan, owner: TimedTracker):
        self.plan, self.owner = plan, owner

    def apply(self, con) -> None:
        start = time.perf_counter()
        self.plan.apply(con)
        self.owner.seconds += time.perf_counter() - start


def run(
    batches: list[Decoded], tracked: bool, directory: Path, timed: TimedTracker | None = None
) -> tuple[float, Path]:
    """Seconds from the first submit until every batch is committed and the store closed.

    The close (a final CHECKPOINT) is timed too: DuckDB checkpoints automatically once its WAL
    passes 16 MB, and a transaction that also upserts ``sessions`` (a table with a primary key)
    shifts when that happens; without the close, a run that happened to checkpoint once more
    inside the timed part would look slower for work the other run merely deferred."""
    db = directory / f"bench-{'on' if tracked else 'off'}-{time.monotonic_ns()}.duckdb"
    store = make_store(db)
    store.open()
    tracker = (timed or make_tracker()) if tracked else None
    writer = make_writer(store, max_queue_records=10**9, tracker=tracker, sweep_interval=3600)
    writer.start()
    start = time.perf_counter()
    futures = [writer.submit(b) for b in batches]
    for f in futures:
        f.result()
    writer.stop()
    store.close()
    return time.perf_counter() - start, db


def test_tracked_writer_tags_every_record(tmp_path):
    batches = decoded_batches(6, 64, rooms=3)
    _, db = run(batches, True, tmp_path)
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM spans WHERE session_id IS NULL").fetchone() == (0,)
        assert con.execute("SELECT count(*), sum(span_count) FROM sessions").fetchone() == (
            3,
            6 * 64,
        )
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--spans", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    batches = decoded_batches(args.batches, args.spans)
    n = args.batches * args.spans
    times: dict[bool, list[float]] = {False: [], True: []}
    in_tracker: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        run(batches[:10], True, Path(tmp))  # warm-up
        for _ in range(args.rounds):
            for tracked in (False, True):
                timed = TimedTracker(make_tracker())
                times[tracked].append(run(batches, tracked, Path(tmp), timed)[0])
                if tracked:
                    in_tracker.append(timed.seconds)
    for tracked in (False, True):
        best = min(times[tracked])
        print(
            f"tracker {'on ' if tracked else 'off'}: best {best:.3f}s"
            f" median {statistics.median(times[tracked]):.3f}s  {n / best:,.0f} spans/s"
        )
    overhead = min(times[True]) / min(times[False]) - 1
    print(f"overhead (best vs best): {overhead:+.1%}")
    spent = min(in_tracker)
    print(
        f"time inside the tracker (prepare + apply + commit): {spent:.3f}s"
        f" = {spent / min(times[False]):.1%} of the untracked run"
    )


if __name__ == "__main__":
    main()
