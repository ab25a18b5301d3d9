"""The DuckLake backend (SPEC 10): replicas on one lake, sessions across them, commit tags,
the catalog going away, maintenance on one replica, the CLI's --store, S3 through moto.

The query, CLI and API suites run against a lake too (their ``world`` fixtures are
parametrized over conftest.BACKENDS); this file tests what only a lake has."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from conftest import (
    lake_args,
    lake_settings,
    make_settings,
    make_store,
    make_tagger,
    read_store,
)
from otlp_factory import trace_request
from postgres import Postgres, free_port, running_postgres
from slow_store import store_of
from test_sessions import log_request, post

from collector.decode import decode_body
from collector.store import SCHEMA_VERSION, DuckDBStore, DuckLakeStore, create_store, lake_migrate
from collector.store.lake_connect import EXTENSIONS, LakeConfig, connect
from collector.store.lake_maintenance import LakeMaintenance, MaintenancePlan, retention_cutoff
from collector.store.maintenance.compaction import compact_all
from collector.store.reads import open_lake_reader
from query.cli import main

S = 1_000_000_000
LAKE = pytest.mark.parametrize("backend", ["ducklake"], indirect=True)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def lake_store(pg: Postgres, root: Path, **overrides: Any) -> DuckLakeStore:
    store = create_store(
        make_settings(root / "unused.duckdb", **lake_settings(pg, root / "lake"), **overrides)
    )
    assert isinstance(store, DuckLakeStore)
    return store


def test_extensions_load_from_the_wheels_with_autoinstall_off(postgres, tmp_path) -> None:
    url = postgres.create_database("extensions")
    con = connect(LakeConfig(url, str(tmp_path)), "256MB")
    try:
        rows = con.execute(
            "SELECT extension_name, loaded, install_path FROM duckdb_extensions()"
            " WHERE extension_name IN ?",
            [list(EXTENSIONS)],
        ).fetchall()
        assert {r[0] for r in rows if r[1]} == set(EXTENSIONS)
        (setting,) = con.execute(
            "SELECT current_setting('autoinstall_known_extensions')"
        ).fetchone()
        assert setting is False
        # The lake is attached and its files go to the data path.
        con.execute("CREATE TABLE lake.t AS SELECT range AS i FROM range(10)")
        assert con.execute("SELECT count(*) FROM lake.t").fetchone() == (10,)
    finally:
        con.close()


@LAKE
def test_two_replicas_read_everything_both_wrote(start_collector) -> None:
    a, b = start_collector(), start_collector()
    start = time.time_ns() - 60 * S
    post(a, trace_request(5, room="r1", session="s-a", start_ns=start))
    post(b, trace_request(7, room="r2", session="s-b", start_ns=start))
    for replica in (a, b):
        rows = replica.query("SELECT room, count(*) FROM spans GROUP BY 1 ORDER BY 1")
        assert rows == [("r1", 5), ("r2", 7)]
    r = httpx.get(b.api_url + "/api/v1/sessions/s-a", timeout=30)
    assert r.status_code == 200 and r.json()["session"]["span_count"] == 5


def _session_outcome(query: Callable[..., list[tuple]]) -> list[tuple]:
    """Sessions and their events, without the ids of inferred sessions (random ULIDs)."""
    sessions = query(
        "SELECT session_id, source, epoch_ns(started_at), epoch_ns(last_seen_at), span_count,"
        " log_count, error_count, services FROM sessions ORDER BY started_at, source"
    )
    out = []
    for sid, source, *rest in sessions:
        events = query(
            "SELECT type, epoch_ns(time), data::VARCHAR FROM session_events"
            " WHERE session_id = ? ORDER BY time, type",
            [sid],
        )
        out.append((sid if source == "explicit" else "inferred", source, *rest, events))
    return out


def _alternate(targets: list[Any], start: int) -> None:
    """One room's records, explicit and inferred sessions, sent to ``targets`` in turn."""
    requests = []
    for i in range(6):  # an inferred session: bursts 10 s apart (idle timeout: 300 s)
        requests.append(trace_request(3, room="hall", start_ns=start + i * 10 * S, seed=i))
    for i in range(4):  # an explicit one, spans and logs
        requests.append(trace_request(2, room="hall", session="talk-1", start_ns=start + i * S))
        requests.append(log_request([start + i * S + 5], room="hall", session="talk-1"))
    # after a gap longer than the idle timeout: a second inferred session of the room
    requests.append(trace_request(4, room="hall", start_ns=start + 1_000 * S))
    requests.append(trace_request(1, room="hall", start_ns=start + 1_001 * S, seed=3))
    for i, request in enumerate(requests):
        post(targets[i % len(targets)], request)


@pytest.mark.parametrize("backend", ["ducklake"], indirect=True)
def test_sessions_across_replicas_come_out_as_from_one_collector(start_collector, tmp_path) -> None:
    start = time.time_ns() - 3_600 * S
    a, b = start_collector(), start_collector()
    _alternate([a, b], start)
    lake = _session_outcome(a.query)
    assert _session_outcome(b.query) == lake

    one = start_collector(db=tmp_path / "one.duckdb", **{"store.backend": "duckdb"})
    _alternate([one], start)
    expected = _session_outcome(one.query)
    assert sorted(s[1] for s in expected) == ["explicit", "inferred", "inferred"]
    assert lake == expected


def test_a_commit_that_landed_although_commit_failed_is_not_written_again(
    postgres, tmp_path, monkeypatch
) -> None:
    store = lake_store(postgres, tmp_path)
    store.open()
    try:
        real = store._write

        def lost_answer(*args: Any) -> None:  # the commit lands, its answer does not arrive
            real(*args)
            raise duckdb.IOException("IO Error: connection to server lost")

        monkeypatch.setattr(store, "_write", lost_answer)
        batch = trace_tables(store)
        store.append(batch)
        assert store.stats["reconciled"] == 1
        cur = store.cursor()
        assert cur.execute("SELECT count(*) FROM span_data").fetchone() == (3,)
    finally:
        store.close()


def test_a_lake_of_an_older_schema_version_is_upgraded_when_a_replica_opens_it(
    postgres, tmp_path
) -> None:
    store = lake_store(postgres, tmp_path)
    store.open()
    store.append(trace_tables(store))
    store.close()
    # Back to version 8: span_archive without the trace id's two numbers.
    con = connect(store.config, "256MB")
    con.execute("ALTER TABLE lake.span_archive DROP COLUMN trace_hi")
    con.execute("ALTER TABLE lake.span_archive DROP COLUMN trace_lo")
    con.execute("UPDATE lake.roomscope_meta SET value = '8' WHERE key = 'schema_version'")
    con.close()
    store.open()
    try:
        cur = store.cursor()
        meta = "SELECT value FROM lake.roomscope_meta WHERE key = 'schema_version'"
        assert cur.execute(meta).fetchone() == (str(SCHEMA_VERSION),)
        assert cur.execute("SELECT count(trace_id) FROM span_rows").fetchone() == (3,)
    finally:
        store.close()


def test_every_table_has_statistics_so_reads_of_empty_ones_stay_cheap(postgres, tmp_path) -> None:
    """A table that never held a row (metric_points, when nobody sends metrics) has no
    statistics in DuckLake, and each query binding it asks the catalog once per column."""
    store = lake_store(postgres, tmp_path)
    store.open()
    store.close()
    con = connect(store.config, "256MB")
    meta = "__ducklake_metadata_lake.public"
    bare = (
        f"SELECT t.table_name FROM {meta}.ducklake_table t WHERE t.end_snapshot IS NULL"
        f" AND t.table_id NOT IN (SELECT table_id FROM {meta}.ducklake_table_stats)"
    )
    assert con.execute(bare).fetchall() == []
    assert con.execute("SELECT count(*) FROM lake.metric_points").fetchone() == (0,)
    snapshots = "SELECT count(*) FROM lake.snapshots()"
    (before,) = con.execute(snapshots).fetchone()
    con.close()
    store.open()  # nothing left to seed: no commit
    store.close()
    con = connect(store.config, "256MB")
    assert con.execute(snapshots).fetchone() == (before,)
    con.close()


def trace_tables(store: DuckLakeStore) -> dict[str, list]:
    """A decoded request of 3 spans, as the writer hands it to append()."""
    body = trace_request(3, room="x").SerializeToString()
    decoded = decode_body("traces", body, "protobuf", make_tagger())
    return {decoded.signal: [decoded.table], **{k: [v] for k, v in decoded.side.items()}}


def test_catalog_stopped_answers_retryably_and_recovers_by_itself(
    tmp_path, start_collector
) -> None:
    with running_postgres() as pg:
        c = start_collector(**lake_settings(pg, tmp_path / "lake"))
        start = time.time_ns() - 60 * S
        post(c, trace_request(2, room="r", session="s", start_ns=start))
        pg.stop()
        body = trace_request(3, room="r", session="s", start_ns=start + S).SerializeToString()
        headers = {"content-type": "application/x-protobuf"}
        r = httpx.post(c.http_url + "/v1/traces", content=body, headers=headers, timeout=60)
        assert r.status_code == 503 and r.headers.get("retry-after")
        pg.start()

        def accepted() -> bool:
            r = httpx.post(c.http_url + "/v1/traces", content=body, headers=headers, timeout=60)
            return r.status_code == 200

        wait_for(accepted, 60)
        assert c.query("SELECT count(*) FROM spans") == [(5,)]
        assert c.query("SELECT span_count FROM sessions WHERE session_id = 's'") == [(5,)]


def test_maintenance_runs_on_one_replica_and_moves_when_its_lease_runs_out(
    postgres, tmp_path, monkeypatch
) -> None:
    url = postgres.create_database("leases")
    config = LakeConfig(url, str(tmp_path))
    con = connect(config, "256MB")
    con.close()
    plan = MaintenancePlan(max_age=0, interval=3600, memory_limit="256MB")
    a = LakeMaintenance(config, "replica-a", plan, None)
    b = LakeMaintenance(config, "replica-b", plan, None)
    try:
        assert a.lead() and not b.lead() and a.lead()  # a renews, b waits
        monkeypatch.setattr("collector.store.lake_maintenance.LEASE_SECONDS", 0.5)
        assert a.lead()  # renewed with a short lease
        a._close()  # a dies: stops renewing
        wait_for(b.lead, 10)
        assert not a.lead()
    finally:
        a.stop()
        b.stop()


class HeldTurnStore(DuckDBStore):
    """A store shared with other collectors (as far as the writer knows) whose next session
    turn, once ``armed``, waits for ``gate``: another replica holding the turn."""

    armed = False

    @property
    def shared(self) -> bool:
        return True

    @contextlib.contextmanager
    def session_turn(self) -> Iterator[list]:
        if self.armed:
            self.armed = False
            self.waiting.set()
            self.gate.wait(30)
        yield []


def test_a_turn_carries_the_requests_that_queued_while_it_waited(start_collector, tmp_path):
    """Turns do not overlap across replicas; the requests that arrive while one waits for its
    turn go into the same commit (a lake's turn costs ~25 ms besides its records)."""
    settings = make_settings(tmp_path / "held.duckdb", **{"sessions.sweep_interval": 3600})
    store = store_of(HeldTurnStore, settings)
    store.waiting, store.gate = threading.Event(), threading.Event()
    c = start_collector(
        db=tmp_path / "held.duckdb", store=store, **{"sessions.sweep_interval": 3600}
    )
    store.armed = True
    start = time.time_ns() - 60 * S
    bodies = [trace_request(10, room="r", session="s", start_ns=start, seed=i) for i in range(6)]
    posts = [threading.Thread(target=post, args=(c, b)) for b in bodies]
    posts[0].start()
    assert store.waiting.wait(30)  # the first request's turn waits
    for t in posts[1:]:
        t.start()
    writer = c.collector.writer
    wait_for(lambda: writer._queue.qsize() == 5)
    store.gate.set()
    for t in posts:
        t.join(30)
    assert (writer.stats["commits"], writer.stats["requests"]) == (1, 6)
    assert c.query("SELECT count(*) FROM spans") == [(60,)]


def rooms_of_files(con: duckdb.DuckDBPyConnection, table: str) -> list[list[str]]:
    """Each data file's rooms, in the file's own row order."""
    files = con.execute(f"SELECT data_file FROM ducklake_list_files('lake', '{table}')")
    return [
        [r for (r,) in con.execute("SELECT room FROM read_parquet(?)", [f]).fetchall()]
        for (f,) in files.fetchall()
    ]


def test_inserts_are_written_as_they_come_and_merges_sort_them(postgres, tmp_path) -> None:
    """DuckLake sorts every insert by the table's SORTED BY unless the table says not to (a
    fifth of an ingest commit); maintenance's merges still sort. A lake without the options
    (made by an older roomscope) gets them when a replica opens it."""
    store = lake_store(postgres, tmp_path)
    store.open()
    store.close()
    con = connect(store.config, "256MB")
    con.execute("CALL lake.set_option('sort_on_insert', true, table_name => 'span_data')")
    con.close()
    day = (time.time_ns() // (86_400 * S) - 1) * 86_400 * S + 43_200 * S  # yesterday noon
    store.open()
    try:
        tables: dict[str, list] = {}
        for room in ("z", "m", "a"):  # one commit, rooms in this order
            body = trace_request(3, room=room, start_ns=day).SerializeToString()
            decoded = decode_body("traces", body, "protobuf", make_tagger())
            for name, table in [(decoded.signal, decoded.table), *decoded.side.items()]:
                tables.setdefault(name, []).append(table)
        store.append(tables)
        con = store.cursor()
        assert rooms_of_files(con, "span_data") == [["z"] * 3 + ["m"] * 3 + ["a"] * 3]
        options = "SELECT option_name, value FROM lake.options() WHERE scope_entry = ?"
        assert ("target_file_size", str(64 * 2**20)) in con.execute(
            options, ["main.span_data"]
        ).fetchall()  # merges make slices of time (lake_layout.WRITE_OPTIONS)
        body = trace_request(3, room="b", start_ns=day).SerializeToString()
        decoded = decode_body("traces", body, "protobuf", make_tagger())
        store.append({decoded.signal: [decoded.table], **{k: [v] for k, v in decoded.side.items()}})
    finally:
        store.close()
    plan = MaintenancePlan(max_age=0, interval=3600, memory_limit="256MB", keep=0)
    job = LakeMaintenance(store.config, "test", plan, forget=None)
    try:
        assert job.run_once()["merged"] >= 1
    finally:
        job.stop()
    con = connect(store.config, "256MB")
    try:
        assert rooms_of_files(con, "span_data") == [["a"] * 3 + ["b"] * 3 + ["m"] * 3 + ["z"] * 3]
    finally:
        con.close()


@LAKE
def test_maintenance_merges_files_and_keeps_the_lake_readable(start_collector) -> None:
    c = start_collector()
    start = time.time_ns() - 60 * S
    for i in range(5):  # five commits: five small files
        post(c, trace_request(400, room="r", session="s", start_ns=start + i * S))
    job = c.job("maintenance")
    job.plan = MaintenancePlan(max_age=0, interval=3600, memory_limit="256MB", keep=0)
    done = job.run_once()
    assert done["led"] == 1 and done["merged"] >= 1
    assert c.query("SELECT count(*) FROM spans") == [(2_000,)]
    files = c.query("SELECT count(*) FROM ducklake_list_files('lake', 'span_data')")
    assert files[0][0] == 1


@LAKE
def test_cli_reads_a_lake_with_store_and_data_path(start_collector, backend) -> None:
    c = start_collector()
    post(c, trace_request(4, room="cli-room", session="cli-s", start_ns=time.time_ns() - S))
    lake = c.collector.store.config
    args = lake_args({"store.catalog": lake.catalog, "store.data_path": lake.data_path})
    result = CliRunner().invoke(main, [*args, "rooms", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert "cli-room" in result.stdout
    bad = CliRunner().invoke(main, ["--store", "postgresql://x", "rooms"])
    assert bad.exit_code == 2 and "ducklake:" in bad.output
    both = CliRunner().invoke(main, [*args, "--db", "x.duckdb", "rooms"])
    assert both.exit_code == 2


def test_migrate_copies_a_file_store_into_a_lake_archived_spans_too(
    start_collector, postgres, tmp_path
) -> None:
    db = tmp_path / "file.duckdb"
    c = start_collector(db=db, **{"compaction.rows": 0})  # compacted below, not meanwhile
    # Settled (compaction moves them to span_archive), and of another day than the new ones:
    # migrate copies each day in a commit of its own.
    old = (time.time_ns() - 30 * 3_600 * S) // S * S  # the 300 spans' 300 ms in one second
    post(c, trace_request(300, room="a", session="old", start_ns=old))
    post(c, trace_request(40, room="b", session="new", start_ns=time.time_ns() - S, seed=1))
    post(c, trace_request(20, room="a", session="new2", start_ns=time.time_ns() - S, seed=2))
    post(c, log_request([old + 1, old + 2], room="a", session="old"))
    c.stop()
    # The job's own timing is not this test's business: it waits while ingest is busy, which a
    # loaded CI machine can stretch past any wait here.
    store = make_store(db)
    store.open()
    compact_all(store, 1, 3_600 * S)
    store.close()
    spans = "SELECT * FROM spans ORDER BY span_id, room, start_time"
    others = [
        "SELECT * FROM logs ORDER BY time",
        "SELECT * FROM sessions ORDER BY session_id",
        "SELECT * FROM session_events ORDER BY session_id, time, type",
    ]
    assert read_store(db, "SELECT count(*) FROM span_archive")[0][0] == 300
    expected = [read_store(db, sql) for sql in [spans, *others]]

    lake = lake_settings(postgres, tmp_path / "lake")
    args = ["--to", "ducklake:" + lake["store.catalog"], "--data-path", lake["store.data_path"]]
    result = CliRunner().invoke(main, ["migrate", *args, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"]["span_data"] == 360
    con = open_lake_reader(LakeConfig(lake["store.catalog"], lake["store.data_path"]), "1GiB")
    try:
        files = rooms_of_files(con, "span_data")  # a day a file, sorted by room as merges sort
        assert sorted(files) == [["a"] * 300, ["a"] * 20 + ["b"] * 40]
        got = [con.execute(sql).fetchall() for sql in [spans, *others]]
        for g, e in zip(got, expected, strict=True):
            for a, b in zip(g, e, strict=True):
                assert a == b, [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    finally:
        con.close()
    again = CliRunner().invoke(main, ["migrate", *args, "--db", str(db)])
    assert again.exit_code == 1 and "already holds records" in again.output


def test_a_lake_on_s3_through_moto(tmp_path, postgres, monkeypatch, start_collector) -> None:
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    s3.start()
    try:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="telemetry")
        lake = lake_settings(postgres, tmp_path / "unused")
        lake.update({"store.data_path": "s3://telemetry/lake", "store.s3_endpoint": endpoint})
        c = start_collector(**lake)
        post(c, trace_request(60, room="s3-room", session="s3-s", start_ns=time.time_ns() - S))
        assert c.query("SELECT count(*) FROM spans WHERE room = 's3-room'") == [(60,)]
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="telemetry")["Contents"]]
        assert any(k.startswith("lake/") and k.endswith(".parquet") for k in keys), keys
    finally:
        s3.stop()


@LAKE
def test_maintenance_retention_deletes_old_records_and_sessions(start_collector) -> None:
    c = start_collector()
    now = time.time_ns()
    post(c, trace_request(30, room="r", session="old", start_ns=now - 3 * 86_400 * S))
    post(c, trace_request(20, room="r", session="new", start_ns=now - 60 * S))
    job = c.job("maintenance")
    job.plan = MaintenancePlan(max_age=86_400, interval=3600, memory_limit="256MB")
    done = job.run_once()
    assert done["led"] == 1 and done["deleted"] >= 31  # 30 spans, the session (and its events)
    assert c.query("SELECT session_id, count(*) FROM spans GROUP BY 1") == [("new", 20)]
    assert c.query("SELECT session_id FROM sessions") == [("new",)]
    tracker = c.collector.writer.tracker  # told on the writer thread
    wait_for(lambda: tracker.get("old") is None and tracker.get("new") is not None)


def test_migrate_cuts_a_day_partitioned_table_into_slices_of_time(monkeypatch) -> None:
    """Each slice becomes one lake file, sorted by room: slices of about FILE_ROWS rows, cut
    at whole minutes and at the end of each day, together every row once."""
    monkeypatch.setattr(lake_migrate, "FILE_ROWS", 100)
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT TIMESTAMP_NS '2026-01-01 23:50:00' + to_minutes(i // 60)"
        " + to_seconds(i % 60) AS time FROM range(1200) r(i)"  # 20 minutes, 60 rows each
    )
    con.execute("INSERT INTO t VALUES (NULL)")
    parts = lake_migrate._parts(con, "log_data", "SELECT * FROM t")
    counts = [con.execute(f"SELECT count(*) FROM ({p})").fetchone()[0] for p in parts]
    days = [
        con.execute(
            f"SELECT count(DISTINCT time::DATE) FROM ({p}) WHERE time IS NOT NULL"
        ).fetchone()[0]
        for p in parts[1:]
    ]
    assert counts == [1, 120, 120, 120, 120, 120, 120, 120, 120, 120, 120]
    assert days == [1] * 10  # 23:50-23:59 is 600 rows: five slices, then the next day's
    assert lake_migrate._parts(con, "sessions", "SELECT 1") == ["SELECT 1"]


def test_retention_of_a_day_or_more_cuts_at_the_start_of_a_utc_day() -> None:
    day = 86_400 * S
    now = 20_000 * day + 5 * 3_600 * S  # 05:00 UTC
    assert retention_cutoff(now, 86_400) == 19_999 * day  # whole days: the cutoff's own day kept
    assert retention_cutoff(now, 7 * 86_400) == 19_993 * day
    assert retention_cutoff(now, 900) == now - 900 * S  # shorter windows: by time


@LAKE
def test_retention_drops_whole_day_partitions_without_delete_files(start_collector) -> None:
    """A window of a day or more deletes whole UTC days: the cutoff's own day is kept whole
    (a record older than the window but in that day stays), and DuckLake ends the older days'
    files instead of writing delete files."""
    c = start_collector()
    raw = time.time_ns() - 86_400 * S
    day = raw - raw % (86_400 * S)
    post(c, trace_request(64, room="r", session="gone", start_ns=day - 3_600 * S))
    post(c, trace_request(64, room="r", session="kept", start_ns=day + (raw - day) // 2))
    job = c.job("maintenance")
    job.plan = MaintenancePlan(max_age=86_400, interval=3600, memory_limit="256MB")
    assert job.run_once()["deleted"] >= 64
    assert c.query("SELECT DISTINCT session_id FROM spans") == [("kept",)]
    files = c.query(
        "SELECT count(*), count(delete_file) FROM ducklake_list_files('lake', 'span_data')"
    )
    assert files == [(1, 0)], files  # the kept day's file, whole; no delete file
