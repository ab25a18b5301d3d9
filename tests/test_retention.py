"""Retention (issue 6): old spans, logs, metric points and sessions go; nothing newer does.

Covers the collector's background job (short interval), ``roomscope prune`` on a stopped store,
its refusal while a collector runs, the schema 1 → 2 migration (trace_index), and a store whose
file stops growing under steady ingest with retention on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from conftest import (
    make_reader,
    make_store,
    make_tagger,
    make_tracker,
    read_store,
    running_writer,
    slow_store,
    wait_for_job,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from otlp_factory import kv, trace_request
from reliability import wait_until

from collector import durations
from collector.decode import decode_body
from collector.store.maintenance import retention
from collector.store.maintenance.retention import Retention
from collector.store.migrations import MIGRATIONS
from collector.store.schema import SCHEMA_VERSION
from query.cli import main

DAY = 86_400 * 10**9
NOW = time.time_ns()
OLD = NOW - 10 * DAY  # older than the 7 d default
NEW = NOW - 60 * 10**9


def logs_request(session: str, t_ns: int, n: int = 5) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([kv("service.name", "agent"), kv("room", "lobby")])
    rl.resource.attributes.append(kv("session", session))
    sl = rl.scope_logs.add()
    for i in range(n):
        rec = sl.log_records.add(time_unix_nano=t_ns + i, severity_number=9, severity_text="INFO")
        rec.body.string_value = f"line {i}"
    return req


def metrics_request(session: str, t_ns: int, n: int = 5) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "agent"), kv("room", "lobby")])
    rm.resource.attributes.append(kv("session", session))
    metric = rm.scope_metrics.add().metrics.add(name="queue.depth")
    for i in range(n):
        metric.gauge.data_points.add(time_unix_nano=t_ns + i, as_int=i)
    return req


def post(rc, signal: str, message) -> None:
    r = httpx.post(
        f"{rc.http_url}/v1/{signal}",
        content=message.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert r.status_code == 200, r.text


def send_old_and_new(rc) -> None:
    for session, t in (("old-session", OLD), ("new-session", NEW)):
        post(rc, "traces", trace_request(64, session=session, start_ns=t, seed=t % 1000))
        post(rc, "logs", logs_request(session, t))
        post(rc, "metrics", metrics_request(session, t))


def counts(query) -> dict[str, int]:
    out = {}
    for table, column in (("spans", "start_time"), ("logs", "time"), ("metric_points", "time")):
        for label, op in (("old", "<"), ("new", ">=")):
            sql = f"SELECT count(*) FROM {table} WHERE {column} {op} make_timestamp_ns(?)"
            out[f"{table}.{label}"] = query(sql, [NOW - 7 * DAY])[0][0]
    for label, sid in (("old", "old-session"), ("new", "new-session")):
        out[f"sessions.{label}"] = query(
            "SELECT count(*) FROM sessions WHERE session_id = ?", [sid]
        )[0][0]
        out[f"session_events.{label}"] = query(
            "SELECT count(*) FROM session_events WHERE session_id = ?", [sid]
        )[0][0]
    out["trace_index.old"] = query(
        "SELECT count(*) FROM trace_index WHERE last_start < make_timestamp_ns(?)",
        [NOW - 7 * DAY],
    )[0][0]
    return out


def assert_pruned(before: dict[str, int], after: dict[str, int]) -> None:
    for key, n in before.items():
        if key.endswith(".old"):
            assert after[key] == 0, (key, after)
        else:
            assert n > 0 and after[key] == n, (key, before, after)


def test_background_job_deletes_old_data_only(start_collector):
    rc = start_collector(**{"retention.max_age": "0"})  # keep everything while sending
    send_old_and_new(rc)
    before = counts(rc.query)
    assert before["spans.old"] == 64 and before["logs.old"] == 5 and before["sessions.old"] == 1
    rc.stop()

    rc = start_collector(rc.db, **{"retention.max_age": "7d", "retention.interval": 0.05})
    job = rc.job("retention")
    wait_for_job(job, lambda stats: stats["deleted"] > 0)
    assert_pruned(before, counts(rc.query))
    assert job.last.rows["spans"] == 64 and job.last.rows["sessions"] == 1
    # The tracker forgot the deleted session: new records for its id start it afresh.
    post(rc, "traces", trace_request(8, session="old-session", start_ns=NEW, seed=5))
    assert rc.query("SELECT span_count FROM sessions WHERE session_id = 'old-session'") == [(8,)]


def test_prune_command_on_a_stopped_store(start_collector):
    rc = start_collector(**{"retention.max_age": "0"})
    send_old_and_new(rc)
    before = counts(rc.query)
    rc.stop()
    result = CliRunner().invoke(main, ["--db", str(rc.db), "prune", "--older-than", "7d"])
    assert result.exit_code == 0, result.output
    assert "64 spans" in result.output and "1 sessions" in result.output
    assert_pruned(before, counts(lambda sql, p: read_store(rc.db, sql, p)))


def test_prune_refuses_while_a_collector_runs(start_collector):
    rc = start_collector(**{"retention.max_age": "0"})
    result = CliRunner().invoke(main, ["--server", rc.api_url, "prune", "--older-than", "7d"])
    assert result.exit_code == 1
    assert "collector is running" in result.output
    # Another process: DuckDB's file lock (in this process the file is simply shared).
    cmd = [sys.executable, "-c", "from query.cli import main; main()"]
    cmd += ["--db", str(rc.db), "prune", "--older-than", "7d"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert "in use (a running collector holds it)" in done.stderr


@pytest.mark.parametrize("bad", ["0", "soon", "-1d"])
def test_prune_rejects_bad_ages(bad, tmp_path):
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "x"), "prune", "--older-than", bad])
    assert result.exit_code == 2


def test_max_age_setting_is_checked(tmp_path):
    from collector.errors import SettingsError
    from collector.settings import load_settings

    assert durations.seconds("7d") == 7 * 86400 and durations.seconds("0") == 0
    with pytest.raises(SettingsError, match=r"retention\.max_age"):
        load_settings(env={"ROOMSCOPE_RETENTION_MAX_AGE": "a week"})


def test_migration_from_version_1_adds_the_trace_index(tmp_path):
    db = str(tmp_path / "v1.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE roomscope_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for statement in MIGRATIONS[1]:
        con.execute(statement)
    con.execute("INSERT INTO roomscope_meta VALUES ('schema_version', '1')")
    tid = "ab" * 16
    con.execute(
        "INSERT INTO spans (trace_id, span_id, name, start_time, duration_ns, end_time) VALUES"
        " (?, '00000000000000a1', 'root', make_timestamp_ns(?), 7, make_timestamp_ns(? + 7)),"
        " (?, '00000000000000a2', 'child', make_timestamp_ns(?), 7, make_timestamp_ns(? + 7))",
        [tid, NEW, NEW, tid, NEW + 5, NEW + 5],
    )
    con.close()
    store = make_store(db)
    store.open()
    store.close()
    assert read_store(tmp_path / "v1.duckdb", "SELECT value FROM roomscope_meta") == [
        (str(SCHEMA_VERSION),)
    ]
    assert read_store(  # version 3: span_data + resources behind the spans view
        tmp_path / "v1.duckdb",
        "SELECT name, epoch_ns(end_time), resource_attributes FROM spans ORDER BY name",
    ) == [("child", NEW + 12, None), ("root", NEW + 7, None)]
    assert read_store(
        tmp_path / "v1.duckdb",
        "SELECT trace_key, epoch_ns(first_start), epoch_ns(last_start) FROM trace_index",
    ) == [(int(tid[:16], 16), NEW, NEW + 5)]
    reader = make_reader(duckdb.connect(db, read_only=True))
    assert [s["name"] for s in reader.trace(tid)["spans"]] == ["root", "child"]
    reader.close()


def test_file_stops_growing_under_steady_ingest(tmp_path):
    """Two simulated days of steady ingest (one request per 10 data-minutes) into a store that
    keeps 6 hours: once retention has started deleting, the file stays within a bound."""
    db = str(tmp_path / "steady.duckdb")
    tracker = make_tracker()
    tagger = make_tagger()
    start = NOW - 2 * DAY
    step = 10 * 60 * 10**9
    sizes = []
    with running_writer(make_store(db), tracker) as writer:
        job = Retention(writer.run, durations.seconds("6h"), 60.0, tracker.forget, max_bytes=0)
        for i in range(2 * 24 * 6):
            t = start + i * step
            body = trace_request(400, session=f"s{i // 12}", start_ns=t, seed=i)
            writer.submit(decode_body("traces", body.SerializeToString(), "protobuf", tagger))
            if i % 6 == 5:  # hourly, as the job would
                job.prune_once(now_ns=t)
                sizes.append(os.path.getsize(db))
    plateau = sizes[len(sizes) // 3 :]  # after the first 16 hours
    assert max(plateau[-8:]) <= max(plateau[:8]) * 1.15, sizes
    (kept,) = read_store(Path(db), "SELECT count(*) FROM spans")[0]
    assert kept <= 7 * 6 * 400


def test_a_delete_slice_holds_about_slice_rows_records(tmp_path, monkeypatch):
    """Retention deletes in slices of at most an hour and about SLICE_ROWS records each (a busy
    minute holds millions of spans: one delete of them all would hold them in one transaction);
    the slices cover everything before the cutoff and nothing after it."""
    monkeypatch.setattr(retention, "SLICE_ROWS", 1_000)
    tagger = make_tagger()
    with running_writer(make_store(str(tmp_path / "slices.duckdb"))) as writer:
        for i in range(10):  # 10 x 800 spans over 10 data-seconds
            body = trace_request(800, session="s", start_ns=NOW + i * 10**9, seed=i)
            writer.submit(decode_body("traces", body.SerializeToString(), "protobuf", tagger))
        cutoff = NOW + 8 * 10**9  # 8 of the 10 requests' spans before it
        bounds = writer.run(lambda s: retention.slices(s.con, cutoff)).result(10)
        counts = writer.run(
            lambda s: [
                s.con.execute(
                    "SELECT count(*) FROM spans WHERE start_time >= make_timestamp_ns(?)"
                    " AND start_time < make_timestamp_ns(?)",
                    [low, high],
                ).fetchone()[0]
                for low, high in zip([0, *bounds], bounds, strict=False)
            ]
        ).result(10)
    assert bounds[-1] == cutoff and bounds == sorted(bounds)
    assert sum(counts) == 8 * 800
    assert len(counts) >= 6 and max(counts) <= 1_600, counts


def test_run_executes_on_the_writer_thread(tmp_path):
    with running_writer(make_store(str(tmp_path / "w.duckdb"))) as writer:
        name = writer.run(lambda s: threading.current_thread().name).result(10)
        assert name == "roomscope-writer"
        with pytest.raises(ZeroDivisionError):
            writer.run(lambda s: 1 / 0).result(10)


def test_a_task_runs_within_a_group_commit_while_the_queue_never_empties(tmp_path):
    """Under sustained load the queue always holds requests: a task (retention, compaction)
    still runs right after the group commit that met it, not once the load ends."""
    body = trace_request(8, start_ns=time.time_ns()).SerializeToString()
    feeding = threading.Event()
    feeding.set()
    sent = [0]
    with running_writer(slow_store(str(tmp_path / "busy.duckdb"), 0.002)) as writer:

        def feed() -> None:  # keeps 16 requests queued behind the one being committed
            inflight = []
            while feeding.is_set():
                decoded = decode_body("traces", body, "protobuf", make_tagger())
                inflight.append(writer.submit(decoded))
                sent[0] += 1
                if len(inflight) >= 16:
                    inflight.pop(0).result(10)
            for f in inflight:
                f.result(10)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            wait_until(lambda: sent[0] >= 32, 10, "the first requests")
            task = writer.run(lambda s: sent[0])
            at = task.result(5)  # with the task re-queued behind new requests: still waiting
            assert feeding.is_set() and sent[0] - at < 200
        finally:
            feeding.clear()
            feeder.join(10)
