"""Compaction (issue 6): settled spans move to span_archive sorted by room, each exactly once.

Covers when a chunk is due (enough spans, all of them settled, cut at an hour boundary), the
rewrite (same rows before and after, each range sorted by room, a ``span_clusters`` row per
range, nothing left for a second run, late spans moved with the next range), the reads that
add a room condition (a session's spans, also when one of its spans has another room), and the
collector's background job over HTTP.
"""

from __future__ import annotations

import datetime as dt
import time

import duckdb
import httpx
import pytest
from conftest import compaction_job, make_reader, make_store, wait_for_job
from otlp_factory import trace_request
from test_span_storage import Done, write

from collector.store import DuckDBStore
from collector.store.maintenance.compaction import compact_all
from collector.store.maintenance.moves import Chunk, compact, next_chunk
from collector.store.maintenance.retention import prune_connection
from collector.store.span_archive import SORT_KEY, TRACE_START
from query.library import catalog
from query.library.filters import SpanFilter
from query.library.sessions import session_window

HOUR = 3_600 * 10**9
SECOND = 10**9  # ranges are cut at whole seconds of start time
BASE = (time.time_ns() - 30 * HOUR) // HOUR * HOUR  # an hour boundary, 30 h ago
ROOMS = ("c-room", "a-room", "b-room")
PER = 40  # spans per room and hour


def filled_store(tmp_path, hours: int = 6) -> DuckDBStore:
    """Each hour, each room sends PER spans, rooms interleaved in time (as they arrive)."""
    store = make_store(tmp_path / "c.duckdb")
    store.open()
    write_hours(store, range(hours))
    return store


def write_hours(store: DuckDBStore, hours, rooms=ROOMS, per: int = PER) -> None:
    """In each of ``hours`` (after BASE), each room writes ``per`` spans, rooms 1 ms apart."""
    for h in hours:
        for j, room in enumerate(rooms):
            start = BASE + h * HOUR + j * 10**6
            write(store, trace_request(per, room=room, start_ns=start, seed=h * 10 + j))


def duckdb_ts(ns: int) -> dt.datetime:
    """How DuckDB hands a TIMESTAMP_NS to Python (naive UTC, microseconds)."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ns // 1000)


def all_spans(con) -> list[tuple]:
    return con.execute("SELECT * FROM spans ORDER BY span_id").fetchall()


def test_a_chunk_is_due_once_enough_settled_spans_gathered(tmp_path):
    store = filled_store(tmp_path)
    con = store.con
    hour = PER * len(ROOMS)  # each hour's spans all start in its first second
    now = BASE + 3 * HOUR + SECOND // 2  # hours 0-2 are over, hour 3's first second is not
    assert next_chunk(con, now, 4 * hour, 0) is None
    assert next_chunk(con, now, 3 * hour, 0) == Chunk(BASE, BASE + 2 * HOUR + SECOND, 3 * hour)
    # Cut at the first second boundary that reaches the count.
    assert next_chunk(con, now, hour + 1, 0) == Chunk(BASE, BASE + HOUR + SECOND, 2 * hour)
    # compaction.after: spans younger than it are not settled.
    assert next_chunk(con, now, 3 * hour, HOUR) is None
    # Spans that retention is about to delete are not counted.
    assert next_chunk(con, now, 3 * hour, 0, oldest_ns=BASE + HOUR) is None
    assert next_chunk(con, now, 2 * hour, 0, oldest_ns=BASE + HOUR) == Chunk(
        BASE + HOUR, BASE + 2 * HOUR + SECOND, 2 * hour
    )
    # After a compacted range, spans retention will delete are skipped too (not rewritten).
    compact(con, next_chunk(con, now, hour, 0))  # [BASE, BASE + 1 s)
    assert next_chunk(con, now, hour, 0, oldest_ns=BASE + 2 * HOUR) == Chunk(
        BASE + 2 * HOUR, BASE + 2 * HOUR + SECOND, hour
    )
    store.close()


def test_compaction_keeps_every_span_once_and_sorts_each_range_by_room(tmp_path):
    store = filled_store(tmp_path)
    con = store.con
    before = all_spans(con)
    assert len(before) == 6 * PER * len(ROOMS)
    moved = compact_all(store, 2 * PER * len(ROOMS), 0, now_ns=BASE + 6 * HOUR)
    assert moved == len(before)
    assert all_spans(con) == before
    ranges = con.execute(
        "SELECT epoch_ns(first_start), epoch_ns(last_start), spans FROM span_clusters ORDER BY 1"
    ).fetchall()
    cuts = [BASE, *(BASE + (2 * i + 1) * HOUR + SECOND for i in range(3))]
    assert ranges == [(cuts[i], cuts[i + 1], 240) for i in range(3)]
    # All moved to span_archive; in storage order, each range's spans run room by room, each
    # room session by session, its traces by their first start, each in time order (SORT_KEY).
    assert con.execute("SELECT count(*) FROM span_data").fetchone() == (0,)
    rows = con.execute(
        f"SELECT room, project, session_id, epoch_ns({TRACE_START}), trace_hi, trace_lo,"
        " epoch_ns(start_time) FROM span_archive ORDER BY rowid"
    ).fetchall()
    assert (
        f"room, project, session_id, {TRACE_START}, trace_hi, trace_lo, trace_id, start_time"
        == SORT_KEY
    )
    assert len({r[4:6] for r in rows}) > len(ROOMS)  # rooms hold several traces
    for i in range(3):
        part = [r for r in rows if cuts[i] <= r[6] < cuts[i + 1]]
        assert part == sorted(part) and [r[0] for r in part[:: 2 * PER]] == sorted(ROOMS)
    assert compact_all(store, 1, 0, now_ns=BASE + 6 * HOUR) == 0  # nothing is due any more
    store.close()


def test_late_spans_move_with_the_next_chunk_oldest_first_at_most_rows(tmp_path):
    """Spans that arrive for a compacted range (a long span is sent when it ends) wait in
    span_data for the next chunk, and move with it: at most ``rows`` of them, whole seconds,
    oldest first; those retention is about to delete stay."""
    store = filled_store(tmp_path, hours=2)
    con = store.con
    hour = PER * len(ROOMS)
    assert compact_all(store, hour, 0, now_ns=BASE + 2 * HOUR) == 2 * hour
    for i, h in enumerate((0, 1, 1)):  # 4 late spans each, in the first and second hour
        write(
            store,
            trace_request(4, room="a-room", start_ns=BASE + h * HOUR + 10**8 * i, seed=90 + i),
        )
    assert compact_all(store, hour, 0, now_ns=BASE + 2 * HOUR) == 0  # they wait for a chunk
    write_hours(store, [2])
    before = all_spans(con)
    now = BASE + 3 * HOUR
    chunk = next_chunk(con, now, hour, 0, oldest_ns=BASE + HOUR // 2)
    mark = BASE + HOUR + SECOND  # the end of the ranges compacted so far
    assert chunk == Chunk(mark, BASE + 2 * HOUR + SECOND, hour, (BASE + HOUR, mark))
    # At most rows late spans: whole seconds, the oldest first (the next second holds 8 more).
    assert next_chunk(con, now, 4, 0).late == (BASE, BASE + SECOND)
    assert compact(con, chunk) == hour + 8
    assert con.execute("SELECT count(*) FROM span_data").fetchone() == (4,)  # retention's
    assert all_spans(con) == before
    # Moved into the chunk's rows, sorted with them by room.
    rows = con.execute(
        "SELECT room, epoch_ns(start_time) FROM span_archive ORDER BY rowid"
    ).fetchall()[-(hour + 8) :]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert sum(r[1] < BASE + 2 * HOUR for r in rows) == 8
    store.close()


def test_spans_that_waited_move_as_a_smaller_range_that_the_next_move_takes_back(tmp_path):
    """Fewer than ``rows`` settled spans that waited ``compaction.wait`` move as a smaller
    range; the next move rewrites it with its own spans, sorted as one range, until a range
    holds ``rows`` spans. Every span stays once."""
    store = filled_store(tmp_path, hours=2)
    con = store.con
    hour = PER * len(ROOMS)  # each hour's spans all start in its first second
    rows = 5 * hour
    now = BASE + 2 * HOUR
    assert next_chunk(con, now, rows, 0) is None  # no wait: they wait for a range's worth
    assert next_chunk(con, now, rows, 0, wait_ns=3 * HOUR) is None  # not waited long enough
    chunk = next_chunk(con, now, rows, 0, wait_ns=HOUR)
    assert chunk == Chunk(BASE, BASE + HOUR + SECOND, 2 * hour)  # to its newest second's end
    assert compact(con, chunk) == 2 * hour

    def ranges() -> list[tuple]:
        return con.execute(
            "SELECT epoch_ns(first_start), epoch_ns(last_start), spans, level"
            " FROM span_clusters ORDER BY first_start"
        ).fetchall()

    def archive_sorted() -> bool:
        got = con.execute("SELECT rowid FROM span_archive ORDER BY rowid").fetchall()
        want = con.execute(f"SELECT rowid FROM span_archive ORDER BY {SORT_KEY}").fetchall()
        return got == want

    mark = BASE + HOUR + SECOND
    assert ranges() == [(BASE, mark, 2 * hour, 0)]
    write_hours(store, [2, 3])
    now = BASE + 4 * HOUR
    chunk = next_chunk(con, now, rows, 0, wait_ns=HOUR)
    assert chunk == Chunk(mark, BASE + 3 * HOUR + SECOND, 2 * hour, back=(BASE, mark))
    before = all_spans(con)
    assert compact(con, chunk) == 2 * hour  # the spans that left span_data
    assert all_spans(con) == before
    mark = BASE + 3 * HOUR + SECOND
    assert ranges() == [(BASE, mark, 4 * hour, 0)]  # one range, sorted as one
    assert archive_sorted()
    # A range's worth takes the smaller range back too; a range of rows spans is kept.
    write_hours(store, range(4, 9))
    now = BASE + 9 * HOUR
    chunk = next_chunk(con, now, rows, 0, wait_ns=HOUR)
    assert chunk == Chunk(mark, BASE + 8 * HOUR + SECOND, rows, back=(BASE, mark))
    before = all_spans(con)
    assert compact(con, chunk) == rows
    assert all_spans(con) == before and archive_sorted()
    assert ranges() == [(BASE, BASE + 8 * HOUR + SECOND, 9 * hour, 0)]
    assert con.execute("SELECT count(*) FROM span_data").fetchone() == (0,)
    write_hours(store, [9])
    chunk = next_chunk(con, BASE + 12 * HOUR, rows, 0, wait_ns=HOUR)
    assert chunk is not None and chunk.back is None
    store.close()


def test_the_job_moves_a_smaller_range_only_in_a_run_without_a_ranges_worth(tmp_path):
    """A run that moved a range's worth leaves the rest for the next range (spans are still
    arriving); a run that found none moves the spans that waited, as a smaller range."""
    store = filled_store(tmp_path, hours=3)
    con = store.con
    hour = PER * len(ROOMS)
    job = compaction_job(lambda fn: Done(fn(store)), store.cursor, 2 * hour, wait=HOUR / 1e9)
    job._stop.wait = lambda seconds: False  # no rests between moves
    now = BASE + 4 * HOUR  # hour 2's spans waited an hour past settling
    assert job.run_once(now_ns=now) == 2 * hour
    assert con.execute("SELECT count(*) FROM span_data").fetchone() == (hour,)
    assert job.run_once(now_ns=now) == hour
    assert con.execute("SELECT count(*) FROM span_data").fetchone() == (0,)
    assert con.execute("SELECT spans FROM span_clusters ORDER BY first_start").fetchall() == [
        (2 * hour,),
        (hour,),
    ]
    store.close()


def test_the_job_waits_while_ingest_needs_the_writer(tmp_path):
    """While ``busy`` (Writer.busy: a filling queue, refused requests) says ingest needs the
    writer, the job moves nothing; it moves what is due once ingest has room again."""
    import threading

    store = filled_store(tmp_path, hours=3)
    busy = threading.Event()
    busy.set()
    job = compaction_job(lambda fn: Done(fn(store)), store.cursor, PER * len(ROOMS))
    job.busy = busy.is_set
    looked = threading.Event()
    job._stop.wait = lambda seconds: looked.set() or False  # no real waits
    result = []
    worker = threading.Thread(target=lambda: result.append(job.run_once(now_ns=BASE + 4 * HOUR)))
    worker.start()
    assert looked.wait(10)  # it found ingest busy, and waits
    assert job.stats["chunks"] == 0 and not result
    busy.clear()
    worker.join(30)
    assert result == [3 * PER * len(ROOMS)] and job.stats["chunks"] == 3
    store.close()


class FailingDelete:
    """A connection whose DELETE statements fail (the disk went away mid-transaction)."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql, *args):
        if sql.startswith("DELETE"):
            raise duckdb.IOException("disk went away")
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_a_failed_rewrite_leaves_every_span_once(tmp_path):
    """The rewrite is one transaction: when it fails after the copies were inserted (here, the
    DELETE of the old ones), nothing of it stays."""
    store = filled_store(tmp_path, hours=2)
    before = all_spans(store.con)
    chunk = next_chunk(store.con, BASE + 2 * HOUR, 1, 0)

    with pytest.raises(duckdb.IOException):
        compact(FailingDelete(store.con), chunk)
    assert all_spans(store.con) == before
    assert store.con.execute("SELECT count(*) FROM span_clusters").fetchone() == (0,)
    assert compact(store.con, chunk) == chunk.spans  # and the next run does it
    assert all_spans(store.con) == before
    store.close()


def test_retention_inside_a_compacted_range_deletes_only_the_old_spans(tmp_path):
    store = filled_store(tmp_path)
    compact_all(store, 6 * PER * len(ROOMS), 0, now_ns=BASE + 6 * HOUR)
    cutoff = BASE + 3 * HOUR  # inside the one compacted range
    pruned = prune_connection(store.con, cutoff)
    assert pruned.rows["spans"] == 3 * PER * len(ROOMS)
    left = store.con.execute("SELECT min(start_time), count(*) FROM span_rows").fetchone()
    assert left[0] >= duckdb_ts(cutoff) and left[1] == 3 * PER * len(ROOMS)
    store.close()


def test_reads_by_room_session_and_trace_agree_before_and_after(tmp_path):
    store = filled_store(tmp_path)
    reader = make_reader(store.cursor())
    trace = store.con.execute("SELECT trace_id FROM span_data LIMIT 1 OFFSET 100").fetchone()[0]

    def reads() -> tuple:
        room = reader.traces(SpanFilter(room="b-room", limit=10_000))["spans"]
        return sorted(s["span_id"] for s in room), reader.trace(trace)

    before = reads()
    assert len(before[0]) == 6 * PER
    assert compact_all(store, 2 * PER * len(ROOMS), 0, now_ns=BASE + 6 * HOUR) > 0
    assert reads() == before
    reader.close()
    store.close()


def post(rc, req, signal: str = "traces") -> None:
    r = httpx.post(
        f"{rc.http_url}/v1/{signal}",
        content=req.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert r.status_code == 200, r.text


def test_session_reads_add_the_room_only_when_it_holds_all_the_sessions_spans(start_collector):
    rc = start_collector(**{"compaction.rows": 0})
    start = BASE + HOUR
    post(rc, trace_request(16, room="a-room", session="s1", start_ns=start, seed=1))
    post(rc, trace_request(16, room="b-room", session="s2", start_ns=start, seed=2))
    post(rc, trace_request(16, room="a-room", session="s2", start_ns=start + 10**6, seed=3))
    con = rc.collector.store.cursor()
    try:
        one, _ = session_window(con, "s1", "spans")
        two, _ = session_window(con, "s2", "spans")
        assert "room = ?" in one and "BETWEEN" in one
        assert "room = ?" not in two and "BETWEEN" in two  # s2 has spans in two rooms
        reader = make_reader(con)
        assert len(reader.session_spans("s1", SpanFilter())["spans"]) == 16
        assert len(reader.session_spans("s2", SpanFilter())["spans"]) == 32
    finally:
        con.close()


def post_hours(rc, hours: int = 3) -> None:
    """Each hour, each room posts PER spans of its own session (named after the room)."""
    for h in range(hours):
        for j, room in enumerate(ROOMS):
            start = BASE + h * HOUR + j
            post(rc, trace_request(PER, room=room, session=room, start_ns=start, seed=h * 10 + j))


def test_the_collectors_job_compacts_settled_spans(start_collector):
    settings = {"compaction.rows": 100, "compaction.after": "1h", "compaction.interval": 0.05}
    # Moves of rows spans (an hour's 120 each), none of fewer while the hours still arrive.
    rc = start_collector(**settings, **{"compaction.wait": "0"})
    post_hours(rc)
    job = rc.job("compaction")
    wait_for_job(job, lambda stats: stats["spans"] >= 3 * PER * len(ROOMS))
    assert rc.query("SELECT count(*), sum(spans) FROM span_clusters") == [(3, 360)]
    assert rc.query("SELECT count(*), count(DISTINCT span_id) FROM spans") == [(360, 360)]
    assert rc.query("SELECT count(*) FROM span_archive") == [(360,)]
    # A session's reads still narrow to its window and room, now counted in span_archive.
    con = rc.collector.store.cursor()
    try:
        window, _ = session_window(con, "b-room", "spans")
        assert "BETWEEN" in window and "room = ?" in window
        found = make_reader(con).session_spans("b-room", SpanFilter(limit=1000))["spans"]
        assert len(found) == 3 * PER
    finally:
        con.close()


def test_dependencies_join_archived_parents_and_children_that_arrive_late(tmp_path):
    """Jaeger's dependencies join spans on their ids as numbers (span_rows' trace_num and
    span_num): an archived parent keeps its ids as numbers, a late child in span_data has
    them as hex text, and the pair is still one call."""
    store = make_store(tmp_path / "c.duckdb")
    store.open()
    parents = trace_request(8, room="a-room", service="agent", start_ns=BASE, seed=1)
    write(store, parents)
    assert compact_all(store, 1, 0, now_ns=BASE + HOUR) == 8
    late = trace_request(3, room="a-room", service="tools", start_ns=BASE + 10**6, seed=2)
    for span, parent in zip(late.resource_spans[0].scope_spans[0].spans, range(3), strict=True):
        called = parents.resource_spans[0].scope_spans[0].spans[parent]
        span.trace_id, span.parent_span_id = called.trace_id, called.span_id
    write(store, late)
    (hot,) = store.con.execute("SELECT count(*) FROM span_data").fetchone()
    assert hot == 3
    calls = catalog.dependencies(store.con, BASE, BASE + HOUR)
    assert calls == [{"parent": "agent", "child": "tools", "callCount": 3}]
    # The same pairs as the ids' text gives (every parent formatted as hex).
    (by_text,) = store.con.execute(
        "SELECT count(*) FROM span_rows c JOIN span_rows p ON p.trace_id = c.trace_id"
        " AND p.span_id = c.parent_span_id WHERE p.service_name <> c.service_name"
    ).fetchone()
    assert by_text == 3
    store.close()
