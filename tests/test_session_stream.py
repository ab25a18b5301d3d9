"""``session traces -o jsonl|csv`` through --db streams the session in trace order, each span read
once (query.library.session_stream): the same bytes as the pages of the list through --server,
with filters, --limit, long traces and ties; two exports side by side under a tiny DuckDB budget
both right (each reader spills to a folder of its own); a batch the budget cannot hold read in
the store's budget instead."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_paging import SEC, Sender
from test_query_fixtures import World

from collector.store.reads import open_reader
from query.cli import main
from query.cli.output import OutputFormat
from query.cli.pages import stream_records
from query.cli.source import RemoteSource, open_source
from query.library.filters import SpanFilter
from query.library.session_stream import stream_session_spans

ROOT = Path(__file__).resolve().parents[1]
BATCH = 20  # the stream's batch in these tests (STREAM_PAGE: 5,000)
LONG = 45  # spans of the long trace: more than a batch, over the whole session


def wait_for_spans(api_url: str, session: str, n: int) -> None:
    deadline = time.monotonic() + 60
    sql = {"sql": f"SELECT count(*) FROM spans WHERE session_id = '{session}'"}
    while httpx.post(api_url + "/api/v1/sql", json=sql).json()["rows"] != [[n]]:
        assert time.monotonic() < deadline, f"{session}: {n} spans not stored in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Session busy-1: 60 traces of 3 spans 1 ms apart, one trace of LONG spans from before the
    first to after the last (some of them starting at the same nanosecond), one trace of a
    single span, one of 3 spans that start at the same nanosecond."""
    w = World(tmp_path_factory.mktemp("session-stream") / "roomscope.duckdb")
    try:
        sender = Sender(w.http_url)
        start = time.time_ns() - 600 * SEC
        long_id = 0x0A1B2C3D4E5F60718293A4B5C6D7E8F9
        for i in range(60):
            sender.trace(start + i * 1_000_000, spans=3)
        sender.trace(start + 61 * 1_000_000, spans=1)
        for _ in range(3):  # a short trace of 3 spans starting at the same nanosecond
            sender.trace(start + 30_500_000, spans=1, trace_id=0x7E57)
        for k in range(LONG):  # every 3rd pair at one start time: ties broken by span id
            at = start - 1_000_000 + (k // 2 if k % 3 == 0 else k) * 1_500_000
            sender.trace(at, spans=1, trace_id=long_id)
        sender.tp.shutdown()
        wait_for_spans(w.api_url, "busy-1", 60 * 3 + 1 + 3 + LONG)
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def wide_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Session wide-1: 40 spans of 200 kB attributes each."""
    w = World(tmp_path_factory.mktemp("session-stream-wide") / "roomscope.duckdb")
    try:
        wide = TracerProvider(resource=Resource.create({"service.name": "wide-svc"}))
        wide.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{w.http_url}/v1/traces")))
        tracer = wide.get_tracer("wide")
        start = time.time_ns() - 600 * SEC
        for i in range(40):
            attrs = {"room": "wide", "session": "wide-1", "blob": f"{i:04d}" + "x" * 200_000}
            span = tracer.start_span("wide", attributes=attrs, start_time=start + i * SEC)
            span.end(end_time=start + i * SEC + 1000)
        wide.shutdown()
        wait_for_spans(w.api_url, "wide-1", 40)
        yield w
    finally:
        w.stop()


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("query.cli.session_commands.STREAM_PAGE", BATCH)
    monkeypatch.setattr("query.cli.pages.STREAM_PAGE", BATCH)


CASES = [
    ["-o", "jsonl"],
    ["-o", "csv"],
    ["-o", "jsonl", "--limit", "7"],
    ["-o", "jsonl", "--limit", "100"],
    ["-o", "csv", "--name", "step-1"],
    ["-o", "jsonl", "--trace-id", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"],
    ["-o", "jsonl", "--name", "no-such-span"],
    ["-o", "csv", "--name", "no-such-span"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_the_stream_prints_the_pages_of_the_list(
    world: World, small_batches: None, args: list[str]
) -> None:
    """--db (streamed) and --server (the API's pages) print the same bytes."""
    same_through_server_and_db(world, ["session", "traces", "busy-1", *args])


def same_through_server_and_db(world: World, command: list[str]) -> str:
    """What ``command`` prints through --server and through --db (the world's file, offline),
    checked to be the same bytes."""
    runner = CliRunner()
    remote = runner.invoke(main, ["--server", world.api_url, *command])
    assert remote.exit_code == 0, remote.output
    with world.offline() as db:
        local = runner.invoke(main, ["--db", db, *command])
    assert local.exit_code == 0, local.output
    assert local.stdout == remote.stdout
    return local.stdout


def test_the_stream_is_in_trace_order_every_span_once(world: World, small_batches: None) -> None:
    runner = CliRunner()
    with world.offline() as db:
        out = runner.invoke(main, ["--db", db, "session", "traces", "busy-1", "-o", "jsonl"])
    spans = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(spans) == len({s["span_id"] for s in spans}) == 60 * 3 + 1 + 3 + LONG
    # The long trace starts first, so it comes first, whole, in (start, span id) order.
    assert {s["trace_id"] for s in spans[:LONG]} == {"0a1b2c3d4e5f60718293a4b5c6d7e8f9"}
    keys = [(s["start_time"], s["span_id"]) for s in spans[:LONG]]
    assert keys == sorted(keys) and len(set(k[0] for k in keys)) < LONG  # ties were there
    firsts: dict[str, str] = {}
    for s in spans:
        firsts.setdefault(s["trace_id"], s["start_time"])
    assert list(firsts.values()) == sorted(firsts.values())


def test_a_batch_over_the_stream_budget_is_read_in_the_stores_budget(wide_world: World) -> None:
    """40 spans of 200 kB do not fit a 16 MiB budget: without relief the read fails; the CLI
    reads that batch in store.memory_limit and prints the right spans."""
    with wide_world.offline() as db:
        con = open_reader(db, "1GiB")
        try:
            con.execute("SET memory_limit = '16MiB'")
            with pytest.raises(duckdb.OutOfMemoryException):
                list(stream_session_spans(con, "wide-1", SpanFilter(), 5000, lambda: False))
        finally:
            con.close()
        source = open_source(db=db)
        source.stream_memory_limit = "16MiB"
        try:
            batches = list(source.session_spans_stream("wide-1", SpanFilter(), 5000))
            (budget,) = source.con.execute("SELECT current_setting('memory_limit')").fetchone()
        finally:
            source.close()
    assert budget == "1.0 GiB"  # the connection's own budget back after the stream
    spans = [s for b in batches for s in b]
    assert [s["attributes"]["blob"][:4] for s in spans] == [f"{i:04d}" for i in range(40)]


def _export(db: str, config: Path) -> subprocess.Popen[bytes]:
    code = "from query.cli import main; main()"
    args = ["--config", str(config), "--db", db, "session", "traces", "busy-1", "-o", "jsonl"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def test_two_exports_side_by_side_under_a_tiny_budget_both_print_the_right_spans(
    world: World, tmp_path: Path
) -> None:
    config = tmp_path / "roomscope.toml"
    # Below ~48 MiB no whole-row read of span_data fits (a block of each of its ~35 columns
    # per scanning thread), the list's pages (-o json) neither.
    config.write_text('[store]\nmemory_limit = "64MiB"\n[query]\nstream_memory_limit = "48MiB"\n')
    with world.offline() as db:
        expected = CliRunner().invoke(
            main, ["--db", db, "session", "traces", "busy-1", "-o", "jsonl"]
        )
        runs = [_export(db, config) for _ in range(2)]
        outputs = [run.communicate(timeout=120) for run in runs]
    assert expected.exit_code == 0 and expected.stdout.count("\n") == 60 * 3 + 1 + 3 + LONG
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err.decode()
        assert out.decode() == expected.stdout


SPILL = """
import sys
from collector.store.reads import open_reader
con = open_reader(sys.argv[1], "32MiB")
con.execute("SET threads = 1")
assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone() == (False,)
print(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
sql = "SELECT i, repeat('x', 20) || i::VARCHAR AS s FROM range(3000000) t(i) ORDER BY hash(i)"
n = total = 0
right = True
for batch in con.execute(sql).to_arrow_reader(100_000):
    ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
    n, total = n + len(ids), total + sum(ids)
    right = right and all(s == 'x' * 20 + str(i) for i, s in zip(ids, texts))
print(n, total, right)
con.close()
"""


def test_readers_of_one_store_spill_each_to_a_folder_of_its_own(world: World) -> None:
    """Two --db readers whose sorts spill at once: each in its own folder beside the store
    (one shared folder: both processes overwrite each other's spill files and crash or read
    wrong rows), removed when the reader closes; and no progress bar (DuckDB draws it on stdout
    for a query of more than 2 s)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with world.offline() as db:
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "env": env}
        runs = [subprocess.Popen([sys.executable, "-c", SPILL, db], **pipes) for _ in range(2)]
        outputs = [run.communicate(timeout=180) for run in runs]
        for run, (_out, err) in zip(runs, outputs, strict=True):
            assert run.returncode == 0, err.decode()[-2000:]
        folders = [out.decode().splitlines()[0] for out, _err in outputs]
        assert folders[0] != folders[1]
        assert all(f.startswith(f"{db}.tmp-") for f in folders)
        assert not any(Path(f).exists() for f in folders)
    n = 3_000_000
    for out, _err in outputs:
        assert out.decode().splitlines()[1] == f"{n} {n * (n - 1) // 2} True"


def test_the_stream_of_an_unknown_session_is_not_found(world: World) -> None:
    with world.offline() as db:
        out = CliRunner().invoke(main, ["--db", db, "session", "traces", "nope", "-o", "jsonl"])
    assert out.exit_code == 1 and "nope" in out.output


class _Spans(list):
    """A page's spans that can be watched for being freed."""


def test_through_server_a_page_is_freed_before_the_next_is_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--server: the stream pages through the API, one page's spans held at a time."""
    alive: list[bool] = []
    previous: list[weakref.ref] = []

    def session_spans(self: RemoteSource, session_id: str, f: SpanFilter) -> dict[str, Any]:
        gc.collect()
        alive.extend(ref() is not None for ref in previous)
        n = int(f.cursor or 0)
        spans = _Spans([{"n": n}])
        previous.append(weakref.ref(spans))
        return {"spans": spans, "next": str(n + 1) if n < 4 else None}

    monkeypatch.setattr(RemoteSource, "session_spans", session_spans)
    source = RemoteSource("http://127.0.0.1:9", timeout=1, token=None)
    stream_records(OutputFormat.JSONL, source.session_spans_stream("s", SpanFilter(), 1), None)
    assert capsys.readouterr().out.splitlines() == [f'{{"n": {i}}}' for i in range(5)]
    assert len(alive) == 10 and not any(alive)
