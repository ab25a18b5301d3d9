"""store.memory_limit: the budget reaches DuckDB (the collector's database and a store read with
--db), and a query that needs more fails with a clear error while ingest goes on."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collector import memory_budget
from collector.errors import SettingsError
from collector.setting_values import size_bytes
from collector.settings import load_settings
from query.cli import main
from query.cli.source import LocalSource, open_source

# Cannot spill: one list of 50 M numbers (400 MB) must be held in memory at once.
HUGE = "SELECT list(x) FROM range(50000000) t(x)"


def cli(config: Path, db: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), "--db", str(db), *args])


def config_file(tmp_path: Path, memory_limit: str) -> Path:
    path = tmp_path / "roomscope.toml"
    path.write_text(f'[store]\nmemory_limit = "{memory_limit}"\n')
    return path


def spans(n: int, batch: int) -> list[Any]:
    """``n`` finished SDK spans of the room ``lobby``, named by ``batch``."""
    captured = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "budget", "room": "lobby"}))
    tp.add_span_processor(SimpleSpanProcessor(captured))
    tracer = tp.get_tracer("budget")
    for i in range(n):
        with tracer.start_as_current_span(f"batch-{batch}-{i}"):
            pass
    return list(captured.get_finished_spans())


def test_memory_limit_setting_is_checked() -> None:
    assert size_bytes("512MB") == 512 * 10**6
    assert size_bytes("1GiB") == 2**30
    assert size_bytes("1.5 gb") == 15 * 10**8
    with pytest.raises(SettingsError, match=r"store\.memory_limit.*is not a size.*512MB"):
        load_settings(env={}, flags={"store.memory_limit": "lots"})
    with pytest.raises(SettingsError, match=r"store\.memory_limit.*is not a size"):
        load_settings(env={}, flags={"store.memory_limit": "50%"})
    with pytest.raises(SettingsError, match=r"store\.memory_limit.*at least 16MiB"):
        load_settings(env={}, flags={"store.memory_limit": "8MB"})
    assert load_settings(env={}).get("store.memory_limit") == "1GiB"


def test_the_budget_is_shared_between_the_process_the_write_queue_and_duckdb() -> None:
    """The process's share is three eighths, at most 384 MiB; the queue takes limits.max_queue_bytes
    but at most a quarter; DuckDB the rest."""
    default = load_settings(env={})
    assert memory_budget.process_bytes(default) == 384 * 2**20
    assert memory_budget.queue_bytes(default) == 256 * 2**20
    assert memory_budget.database_budget(default) == f"{384 * 1024}KiB"
    small = load_settings(env={}, flags={"store.memory_limit": "96MiB"})
    assert memory_budget.queue_bytes(small) == 24 * 2**20
    assert memory_budget.database_budget(small) == f"{36 * 1024}KiB"
    big = load_settings(env={}, flags={"store.memory_limit": "8GiB"})
    assert memory_budget.queue_bytes(big) == 256 * 2**20  # limits.max_queue_bytes
    assert memory_budget.database_budget(big) == f"{(8192 - 384 - 256) * 1024}KiB"


def test_memory_limit_reaches_duckdb(start_collector: Any, tmp_path: Path) -> None:
    c = start_collector(**{"store.memory_limit": "96MiB"})
    # the collector's DuckDB gets the budget less the process's share and the queue's quarter
    assert c.query("SELECT current_setting('memory_limit')") == [("36.0 MiB",)]
    assert c.query("SELECT current_setting('temp_directory')") == [(f"{c.db}.tmp",)]
    # and hands freed memory back sooner than DuckDB's default (up to 512 MiB kept after a
    # bulk free, outside the budget)
    assert c.query(
        "SELECT current_setting('allocator_bulk_deallocation_flush_threshold'),"
        " current_setting('allocator_background_threads')"
    ) == [("32.0 MiB", True)]
    c.stop()

    # --db: the read-only store the CLI opens (open_source, as every read command does) gets
    # the configured budget too.
    source = open_source(config=str(config_file(tmp_path, "80MiB")), db=str(c.db))
    try:
        assert isinstance(source, LocalSource)
        row = source.con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchall()
    finally:
        source.close()
    # ... and spills to a folder of its own process (readers of one file may run side by side).
    assert row[0][0] == "80.0 MiB"
    assert row[0][1].startswith(f"{c.db}.tmp-{os.getpid()}-")


def test_query_over_budget_fails_cleanly_while_ingest_goes_on(
    start_collector: Any, tmp_path: Path
) -> None:
    c = start_collector(**{"store.memory_limit": "64MB"})
    exporter = OTLPSpanExporter(endpoint=f"{c.http_url}/v1/traces")
    results: list[SpanExportResult] = []
    stop = threading.Event()

    def ingest() -> None:
        batch = 0
        while not stop.is_set() or batch < 4:
            results.append(exporter.export(spans(50, batch)))
            batch += 1

    assert exporter.export(spans(50, -1)) == SpanExportResult.SUCCESS  # before
    sender = threading.Thread(target=ingest)
    sender.start()
    try:
        with httpx.Client(base_url=c.api_url, timeout=60) as api:
            r = api.post("/api/v1/sql", json={"sql": HUGE})
            assert r.status_code == 400, r.text
            message = r.json()["error"]
            assert "store.memory_limit" in message and "Out of Memory" in message, message
            # the collector keeps serving: a query within the budget, and its health
            r = api.post("/api/v1/sql", json={"sql": "SELECT count(*) FROM range(1000)"})
            assert r.status_code == 200 and r.json()["rows"] == [[1000]]
            assert api.get("/healthz").status_code == 200
    finally:
        stop.set()
        sender.join()
    assert exporter.export(spans(50, 10_000)) == SpanExportResult.SUCCESS  # after
    exporter.shutdown()
    assert results and all(r == SpanExportResult.SUCCESS for r in results), results
    sent = 50 * (len(results) + 2)
    assert c.query("SELECT count(*) FROM spans WHERE service_name = 'budget'") == [(sent,)]
    c.stop()

    # --db: the same query on the file read by the CLI fails with one clear line, exit 1.
    result = cli(config_file(tmp_path, "64MB"), c.db, "sql", HUGE)
    assert result.exit_code == 1, result.output
    assert "store.memory_limit" in result.stderr and "Out of Memory" in result.stderr
    assert "Traceback" not in result.output


def test_a_commit_out_of_memory_is_answered_retryably_not_as_a_server_error(
    start_collector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: when a user's query held the budget, an ingest commit's out-of-memory error was an
    HTTP 500 (not retried by exporters). Now 503 with Retry-After, and the records commit on a
    retry once memory is back."""
    import duckdb
    from otlp_factory import trace_request

    c = start_collector()
    store = c.collector.store
    real_write = store._write
    failing = {"left": 1}

    def write(tables: Any, also: Any = None) -> None:
        if tables and failing["left"]:
            failing["left"] -= 1
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate (test)")
        real_write(tables, also)

    monkeypatch.setattr(store, "_write", write)
    body = trace_request(4).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    with httpx.Client(timeout=30) as client:
        r = client.post(f"{c.http_url}/v1/traces", content=body, headers=headers)
        assert r.status_code == 503 and "Retry-After" in r.headers, (r.status_code, r.text)
        for _ in range(100):  # the writer probes the store back to health by itself
            r = client.post(f"{c.http_url}/v1/traces", content=body, headers=headers)
            if r.status_code == 200:
                break
            assert r.status_code == 503, (r.status_code, r.text)
            threading.Event().wait(0.05)
        assert r.status_code == 200, r.text
    assert c.query("SELECT count(*) FROM spans") == [(4,)]
