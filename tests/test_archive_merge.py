"""Merging compacted ranges (archive_merge.py): several ranges of span_archive become one,
sorted by room again, in pieces; every span stays exactly once.

Covers which ranges are due (the oldest consecutive ones of the lowest level, none past
``compaction.levels``, none retention is about to delete), the merge itself (same rows before
and after, the merged range room by room in storage order, one ``span_clusters`` row of the
next level), a failed piece, the version 6 → 7 migration (levels of existing ranges), and the
collector's job over HTTP.
"""

from __future__ import annotations

import duckdb
import pytest
from conftest import compaction_job, make_reader, make_store, wait_for_job
from test_compaction import (
    BASE,
    HOUR,
    PER,
    ROOMS,
    FailingDelete,
    all_spans,
    filled_store,
    post_hours,
    write_hours,
)
from test_span_storage import Done

from collector.store import SCHEMA_VERSION, DuckDBStore
from collector.store.maintenance.archive_merge import Merge, merge_piece, next_merge, pieces
from collector.store.maintenance.compaction import compact_all, merge_all
from collector.store.span_archive import TRACE_START
from query.library.filters import SpanFilter
from query.library.reader import Reader

HOUR_SPANS = PER * len(ROOMS)  # each hour's spans all start in its first minute


def levels(con) -> list[tuple]:
    return con.execute(
        "SELECT level, spans, epoch_ns(first_start), epoch_ns(last_start) FROM span_clusters"
        " ORDER BY first_start"
    ).fetchall()


def compacted_store(tmp_path, hours: int = 6) -> DuckDBStore:
    """``hours`` ranges of level 0 in span_archive, one per hour."""
    store = filled_store(tmp_path, hours)
    assert compact_all(store, HOUR_SPANS, 0, now_ns=BASE + hours * HOUR) == hours * HOUR_SPANS
    assert [lv for lv, *_ in levels(store.con)] == [0] * hours
    return store


def storage_order(con, first: int, last: int) -> list[tuple]:
    """(room, project, session, trace's first start, trace, start) of the archive's spans in
    [first, last), in storage order (each range sorted so: span_archive.SORT_KEY)."""
    rows = con.execute(
        f"SELECT room, project, session_id, epoch_ns({TRACE_START}), trace_hi, trace_lo,"
        " epoch_ns(start_time) FROM span_archive ORDER BY rowid"
    )
    return [r for r in rows.fetchall() if first <= r[6] < last]


def room_spans(reader: Reader, room: str) -> list[str]:
    return sorted(s["span_id"] for s in reader.traces(SpanFilter(room=room, limit=9999))["spans"])


def test_merging_keeps_every_span_once_and_sorts_each_merged_range_by_room(tmp_path):
    store = compacted_store(tmp_path)
    con = store.con
    reader = make_reader(store.cursor())
    before = all_spans(con)
    by_room = room_spans(reader, "b-room")
    assert len(by_room) == 6 * PER
    # Pairs of level 0 make three of level 1; the oldest two of those make one of level 2.
    assert merge_all(store, fanin=2, levels=2, rows=HOUR_SPANS) == 6 * HOUR_SPANS + 4 * HOUR_SPANS
    found = levels(con)
    assert [(lv, n) for lv, n, *_ in found] == [(2, 4 * HOUR_SPANS), (1, 2 * HOUR_SPANS)]
    assert found[0][3] == found[1][2]  # the ranges still follow each other
    assert all_spans(con) == before
    assert con.execute("SELECT count(*) FROM span_archive").fetchone() == (len(before),)
    for _, spans, first, last in found:
        part = storage_order(con, first, last)
        assert len(part) == spans and part == sorted(part)  # room by room, trace by trace
        assert [r[0] for r in part[:: spans // 3]] == sorted(ROOMS)
    assert room_spans(reader, "b-room") == by_room
    # Nothing is due any more: one range of level 1 left, level 2 is the highest.
    assert next_merge(con, 2, 2) is None
    assert merge_all(store, 2, 2, HOUR_SPANS) == 0
    reader.close()
    store.close()


def test_pieces_split_by_room_values_cover_every_span_once(tmp_path):
    store = compacted_store(tmp_path, hours=2)
    con = store.con
    con.execute("UPDATE span_archive SET room = NULL WHERE rowid % 7 = 0")
    merge = next_merge(con, 2, 1)
    assert merge == Merge(0, BASE, levels(con)[-1][3], 2 * HOUR_SPANS, 2)
    # Four pieces asked, three room values: the bounds are the rooms after the smallest.
    slices = pieces(con, merge, rows=HOUR_SPANS // 2)
    assert [p.where for p in slices] == [
        "room < ?",
        "room >= ? AND room < ?",
        "(room >= ? OR room IS NULL)",
    ]
    counts = [
        con.execute(
            f"SELECT count(*) FROM span_archive WHERE {p.where}", list(p.params)
        ).fetchone()[0]
        for p in slices
    ]
    assert [p.params for p in slices] == [("b-room",), ("b-room", "c-room"), ("c-room",)]
    assert sum(counts) == 2 * HOUR_SPANS and all(counts)
    assert pieces(con, merge, rows=10 * HOUR_SPANS)[0].where == "TRUE"  # one piece
    store.close()


def test_which_ranges_are_due(tmp_path):
    store = make_store(tmp_path / "d.duckdb")
    store.open()
    con = store.con

    def ranges(*lv) -> None:
        con.execute("DELETE FROM span_clusters")
        for i, level in enumerate(lv):
            con.execute(
                "INSERT INTO span_clusters VALUES (make_timestamp_ns(?), make_timestamp_ns(?),"
                " 10, NULL, ?)",
                [BASE + i * HOUR, BASE + (i + 1) * HOUR, level],
            )

    ranges(None, 1, 0, 0, 1, 0, 0, 0)
    # The oldest run of consecutive ranges of the lowest level.
    assert next_merge(con, 2, 2) == Merge(0, BASE + 2 * HOUR, BASE + 4 * HOUR, 20, 2)
    assert next_merge(con, 3, 2) == Merge(0, BASE + 5 * HOUR, BASE + 8 * HOUR, 30, 3)
    assert next_merge(con, 4, 2) is None  # no four level-0 ranges follow each other
    # The newest range, of fewer than rows spans, is the next move's to take back.
    assert next_merge(con, 3, 2, rows=11) is None
    assert next_merge(con, 2, 2, rows=11) == Merge(0, BASE + 2 * HOUR, BASE + 4 * HOUR, 20, 2)
    assert next_merge(con, 3, 2, rows=10) == Merge(0, BASE + 5 * HOUR, BASE + 8 * HOUR, 30, 3)
    # Ranges retention is about to delete are left alone.
    assert next_merge(con, 2, 2, oldest_ns=BASE + 3 * HOUR) == Merge(
        0, BASE + 5 * HOUR, BASE + 7 * HOUR, 20, 2
    )
    ranges(1, 1, 0)
    assert next_merge(con, 2, 2) == Merge(1, BASE, BASE + 2 * HOUR, 20, 2)
    assert next_merge(con, 2, 1) is None  # level 1 is the highest
    assert next_merge(con, 0, 2) is None and next_merge(con, 1, 2) is None  # merging off
    ranges(None, None, None)  # version-5 ranges, sorted in span_data: never merged
    assert next_merge(con, 2, 2) is None
    store.close()


def test_a_failed_piece_leaves_every_span_once_and_the_next_run_merges_again(tmp_path):
    store = compacted_store(tmp_path, hours=2)
    before = all_spans(store.con)
    clusters = levels(store.con)
    merge = next_merge(store.con, 2, 1)
    piece = pieces(store.con, merge, HOUR_SPANS)[0]

    with pytest.raises(duckdb.IOException):
        merge_piece(FailingDelete(store.con), merge, piece)
    assert all_spans(store.con) == before and levels(store.con) == clusters
    assert merge_all(store, 2, 1, HOUR_SPANS) == 2 * HOUR_SPANS
    assert all_spans(store.con) == before
    assert [lv for lv, *_ in levels(store.con)] == [1]
    store.close()


def test_the_job_closes_its_planning_cursor_before_the_writer_moves_or_merges(tmp_path):
    """A DuckDB cursor keeps its last query's transaction open; one older than a move or a
    merge piece keeps checkpoints from freeing the row groups it deleted (at 10 M spans the file
    grew by every merged span)."""
    store = filled_store(tmp_path, hours=4)
    opened: list = []

    def cursor():
        opened.append(store.cursor())
        return opened[-1]

    def open_cursors() -> int:
        n = 0
        for cur in opened:
            try:
                cur.execute("SELECT 1")
                n += 1
            except duckdb.ConnectionException:
                pass
        return n

    tasks = []

    def run(fn):
        tasks.append(open_cursors())
        return Done(fn(store))

    job = compaction_job(run, cursor, HOUR_SPANS, merge=2, levels=1)
    job._stop.wait = lambda seconds: False  # no rests between pieces
    assert job.run_once(now_ns=BASE + 4 * HOUR) == 4 * HOUR_SPANS
    assert job.stats["merges"] == 2 and len(tasks) > 8
    assert tasks == [0] * len(tasks)
    assert [lv for lv, *_ in levels(store.con)] == [1, 1]
    store.close()


def test_chunks_due_during_a_merge_are_moved_before_its_next_piece(tmp_path):
    """A merge beside ingest takes a minute or more; new spans do not wait for it in span_data
    (and the row groups each move frees are refilled before the next move frees more)."""
    store = compacted_store(tmp_path, hours=2)
    seen = []  # (moves, merges) done when each writer task ran

    def run(fn):
        seen.append((job.stats["chunks"], job.stats["merges"]))
        if len(seen) == 1:  # the first piece: two more hours of spans arrive meanwhile
            write_hours(store, (2, 3))
        return Done(fn(store))

    job = compaction_job(run, store.cursor, HOUR_SPANS, merge=2, levels=1)
    job._stop.wait = lambda seconds: False  # no rests between pieces
    assert job.run_once(now_ns=BASE + 4 * HOUR) == 2 * HOUR_SPANS  # the two hours moved
    assert (2, 0) in seen  # both moved before the first merge was done
    assert job.stats["chunks"] == 2 and job.stats["merges"] == 2  # then merged in turn
    assert [(lv, n) for lv, n, *_ in levels(store.con)] == [(1, 2 * HOUR_SPANS)] * 2
    assert len(all_spans(store.con)) == 4 * HOUR_SPANS
    store.close()


def test_migration_to_version_7_gives_archived_ranges_level_0(tmp_path):
    compacted_store(tmp_path, hours=2).close()
    # Back to a version-6 file: span_clusters without levels, plus a range that version 5
    # sorted in span_data.
    con = duckdb.connect(str(tmp_path / "c.duckdb"))
    con.execute("ALTER TABLE span_clusters DROP COLUMN level")
    con.execute("DROP TABLE forward_outbox")  # version 8's tables
    con.execute("DROP TABLE forward_endpoints")
    con.execute(  # version 9's trace ids as numbers
        "UPDATE span_archive SET trace_id = printf('%016x%016x', trace_hi, trace_lo)"
        " WHERE trace_id IS NULL"
    )
    con.execute("ALTER TABLE span_archive DROP COLUMN trace_hi")
    con.execute("ALTER TABLE span_archive DROP COLUMN trace_lo")
    con.execute(
        "INSERT INTO span_clusters VALUES (make_timestamp_ns(?), make_timestamp_ns(?), 5, NULL)",
        [BASE - 2 * HOUR, BASE - HOUR],
    )
    con.execute("UPDATE roomscope_meta SET value = '6' WHERE key = 'schema_version'")
    con.close()
    store = make_store(tmp_path / "c.duckdb")
    store.open()
    assert [lv for lv, *_ in levels(store.con)] == [None, 0, 0]
    # Rows archived before version 9 keep their trace ids in trace_id, and read the same.
    (kept,) = store.con.execute("SELECT count(trace_id) FROM span_archive").fetchone()
    assert kept == 2 * HOUR_SPANS
    assert store.con.execute(
        "SELECT count(*) FROM span_rows WHERE trace_id IS NULL"
    ).fetchone() == (0,)
    meta = "SELECT value FROM roomscope_meta WHERE key = 'schema_version'"
    assert store.con.execute(meta).fetchone() == (str(SCHEMA_VERSION),)
    store.close()


def test_the_collectors_job_merges_compacted_ranges(start_collector):
    settings = {
        "compaction.rows": 100,
        "compaction.after": "1h",
        "compaction.interval": 0.05,
        "compaction.merge": 2,
        "compaction.levels": 1,
        "compaction.wait": "0",  # moves of rows spans only, while the hours still arrive
    }
    rc = start_collector(**settings)
    post_hours(rc)
    job = rc.job("compaction")
    wait_for_job(job, lambda stats: stats["merges"] >= 1 and stats["spans"] >= 3 * HOUR_SPANS)
    assert rc.query("SELECT level, spans FROM span_clusters ORDER BY first_start") == [
        (1, 2 * HOUR_SPANS),
        (0, HOUR_SPANS),
    ]
    assert rc.query("SELECT count(*), count(DISTINCT span_id) FROM spans") == [(360, 360)]
    assert rc.query("SELECT count(*) FROM span_archive") == [(360,)]
