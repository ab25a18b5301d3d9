"""Giving free space back (maintenance/reclaim.py): the row groups at the end of the file are
rewritten into the free blocks lower down, and the checkpoint shortens the file.

Covers the rewrite itself (every row the same before and after, reads by room the same, the
file shorter, tables with a key left alone), a failed rewrite (rolled back), and the
compaction job, which rewrites only while more than ``compaction.reclaim`` of the file is free.
"""

from __future__ import annotations

import os
import shutil

import duckdb
import pytest
from conftest import compaction_job, make_reader, make_store
from test_compaction import BASE, HOUR, FailingDelete, write_hours
from test_span_storage import Done

from collector.store import DuckDBStore
from collector.store.maintenance import compaction
from collector.store.maintenance.compaction import compact_all
from collector.store.maintenance.reclaim import (
    HEADER_BYTES,
    file_blocks,
    fragmented,
    keyed_tables,
    reclaim_keyed,
    reclaim_step,
    stored_tables,
)
from query.library.filters import SpanFilter

ROOMS = ("a-room", "b-room", "c-room", "d-room")


@pytest.fixture(scope="module")
def holed_file(tmp_path_factory) -> str:
    """~60 k spans moved from span_data to span_archive: their old blocks are free, below the
    archive's copy at the end of the file (built once; each test opens a copy)."""
    store = make_store(tmp_path_factory.mktemp("holed") / "r.duckdb")
    store.open()
    write_hours(store, range(3), ROOMS, 5_000)
    store.checkpoint()
    assert compact_all(store, 20_000, 0, now_ns=BASE + 3 * HOUR) == 60_000
    store.close()
    return str(store.path)


@pytest.fixture
def holed(holed_file, tmp_path) -> DuckDBStore:
    path = tmp_path / "r.duckdb"
    shutil.copy(holed_file, path)
    store = make_store(path)
    store.open()
    yield store
    store.close()


def contents(con) -> dict[str, tuple]:
    """Each table's rows, as a count and an order-free sum of row hashes."""
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    return {
        t: con.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {t} AS t").fetchone()
        for t in tables
    }


def by_room(store: DuckDBStore, room: str) -> list[str]:
    found = make_reader(store.cursor()).traces(SpanFilter(room=room, limit=99_999))["spans"]
    return sorted(s["span_id"] for s in found)


def test_rewriting_the_end_of_the_file_fills_its_holes_and_shortens_it(holed):
    store = holed
    con = store.con
    total, _, free = file_blocks(con)
    assert free > 0.3 * total  # the moved spans' old blocks
    assert fragmented(file_blocks(con), 0.05) and not fragmented(file_blocks(con), 0.0)
    before, room = contents(con), by_room(store, ROOMS[1])
    size = os.path.getsize(store.path)

    assert reclaim_step(con, 10**9) > 0
    store.checkpoint()
    assert contents(con) == before
    assert by_room(store, ROOMS[1]) == room
    assert con.execute("SELECT count(*) FROM span_rows").fetchone() == (60_000,)
    assert file_blocks(con)[0] < total - free // 2
    assert os.path.getsize(store.path) < size * 0.75


def test_blocks_cut_off_the_file_are_not_counted_free_once_it_is_opened_again(holed):
    """DuckDB 1.5.5 counts them in its total after a restart; file_blocks leaves them out."""
    store = holed
    reclaim_step(store.con, 10**9)
    store.checkpoint()
    shortened = file_blocks(store.con)
    store.close()
    in_file = (os.path.getsize(store.path) - HEADER_BYTES) // 262_144
    con = duckdb.connect(str(store.path), read_only=True)
    try:
        total, used, free = con.execute(
            "SELECT total_blocks, used_blocks, free_blocks FROM pragma_database_size()"
        ).fetchone()
        assert total > in_file  # DuckDB's own count
        assert file_blocks(con) == (in_file, used, free - (total - in_file)) == shortened
    finally:
        con.close()
    store.open()


def test_a_table_with_a_key_is_rewritten_too(tmp_path):
    """Its rows go out to a temporary table and back (a copy beside them would collide)."""
    con = duckdb.connect(str(tmp_path / "k.duckdb"))
    con.execute("CREATE TABLE plain (v VARCHAR)")
    con.execute("CREATE TABLE keyed (k INTEGER PRIMARY KEY, v VARCHAR)")
    con.execute("INSERT INTO plain SELECT md5(i::VARCHAR) FROM range(1000000) r(i)")
    con.execute("CHECKPOINT")
    con.execute("INSERT INTO keyed SELECT i, md5(i::VARCHAR) FROM range(20000) r(i)")
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM plain")  # holes below the keyed table's blocks
    con.execute("CHECKPOINT")
    assert stored_tables(con) == {"keyed": True, "plain": False}
    before, blocks = contents(con), table_blocks(con, "keyed")
    assert reclaim_step(con, 10**9) == 20_000
    con.execute("CHECKPOINT")
    assert contents(con) == before
    assert max(table_blocks(con, "keyed")) < min(blocks)  # now in the holes


def index_at_the_end(path) -> duckdb.DuckDBPyConnection:
    """A file whose last blocks are a keyed table's index and whose rows all lie below free
    blocks: the keyed rows, then many plain rows, then a change to the keyed table alone (a
    delete changes its index, not its row groups), then the plain rows deleted."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE keyed (k VARCHAR PRIMARY KEY, v INTEGER)")
    con.execute("CREATE TABLE plain (v VARCHAR)")
    con.execute("INSERT INTO keyed SELECT md5(i::VARCHAR), i FROM range(200000) r(i)")
    con.execute("CHECKPOINT")
    con.execute("INSERT INTO plain SELECT md5(i::VARCHAR) FROM range(1000000) r(i)")
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM keyed WHERE v % 2 = 0")
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM plain")
    con.execute("CHECKPOINT")
    return con


def test_an_index_at_the_end_of_the_file_goes_down_when_its_table_is_rewritten(tmp_path):
    con = index_at_the_end(tmp_path / "i.duckdb")
    total, _, free = file_blocks(con)
    assert fragmented((total, 0, free), 0.3)
    before = contents(con)
    assert reclaim_step(con, 10**9) == 0  # no row past the used size
    con.execute("CHECKPOINT")
    assert file_blocks(con)[0] == total  # the index holds the free blocks below it
    assert dict(keyed_tables(con)) == {"keyed": 100_000}
    assert reclaim_keyed(con, ["keyed"]) == 100_000
    con.execute("CHECKPOINT")
    assert contents(con) == before
    assert file_blocks(con)[0] < total - free // 2


def test_the_job_rewrites_the_keyed_tables_smallest_first_once_no_row_is_past_the_end(tmp_path):
    store = make_store(tmp_path / "j.duckdb")
    store.open()
    store.close()
    index_at_the_end(store.path).close()
    store.open()
    total = file_blocks(store.con)[0]
    job = compaction_job(lambda fn: Done(fn(store)), store.cursor, 20_000, reclaim=0.05)
    job._stop.wait = lambda seconds: False  # no rests
    job.run_once(now_ns=BASE)
    # The store's own keyed tables (a few rows) in one step, then "keyed" (over a step's rows).
    assert job.stats["reclaimed"] > 100_000 and file_blocks(store.con)[0] < total
    assert contents(store.con)["keyed"][0] == 100_000
    store.close()


def table_blocks(con, table: str) -> list[int]:
    rows = con.execute(
        f"SELECT DISTINCT block_id FROM pragma_storage_info('{table}') WHERE block_id >= 0"
    )
    return [r[0] for r in rows.fetchall()]


def test_a_failed_rewrite_leaves_every_row_once(holed):
    store = holed
    before = contents(store.con)
    blocks = file_blocks(store.con)
    with pytest.raises(duckdb.IOException):
        reclaim_step(FailingDelete(store.con), 10**9)
    assert contents(store.con) == before
    store.checkpoint()
    assert file_blocks(store.con)[0] >= blocks[0]  # nothing rewritten


@pytest.mark.parametrize(("share", "rewrites"), [(0.05, True), (0.0, False), (0.9, False)])
def test_the_compaction_job_rewrites_only_while_too_much_is_free(holed, share, rewrites):
    store = holed
    before = contents(store.con)
    total = file_blocks(store.con)[0]
    job = compaction_job(lambda fn: Done(fn(store)), store.cursor, 20_000, reclaim=share)
    job._stop.wait = lambda seconds: False  # no rests
    job.run_once(now_ns=BASE + 3 * HOUR)
    assert (job.stats["reclaimed"] > 0) is rewrites
    assert (file_blocks(store.con)[0] < total) is rewrites
    assert contents(store.con) == before


def test_the_job_goes_on_step_by_step_when_the_end_holds_more_than_a_step(holed):
    """A step rewrites about ``rows`` rows (whole row groups); the job takes steps until no
    row is left past the used size or the file is no longer fragmented."""
    store = holed
    before, total = contents(store.con), file_blocks(store.con)[0]
    job = compaction_job(lambda fn: Done(fn(store)), store.cursor, 8_000, reclaim=0.05)
    job._stop.wait = lambda seconds: False  # no rests
    job.run_once(now_ns=BASE + 3 * HOUR)
    assert job.stats["reclaimed"] > 16_000  # three steps at least
    assert file_blocks(store.con)[0] < total * 0.75
    assert contents(store.con) == before


def test_a_step_whose_rows_come_back_to_the_end_stops_the_job_until_the_file_changes(
    holed, monkeypatch
):
    """In a small file the free blocks below may not hold a row group, and its copy lands at
    the end again: the job stops after such a step and does not try again while the file keeps
    its size (it rewrote the same rows every run)."""
    store = holed
    calls = []

    def no_progress(con, max_rows: int) -> int:  # the rows back where they were
        calls.append(max_rows)
        return 5_000

    monkeypatch.setattr(compaction, "reclaim_step", no_progress)
    job = compaction_job(lambda fn: Done(fn(store)), store.cursor, 8_000, reclaim=0.05)
    job._stop.wait = lambda seconds: False  # no rests
    job.run_once(now_ns=BASE + 3 * HOUR)
    assert len(calls) == 1 and job.stats["reclaimed"] == 5_000
    job.run_once(now_ns=BASE + 3 * HOUR)
    assert len(calls) == 1
