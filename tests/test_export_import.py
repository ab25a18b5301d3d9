"""roomscope session export and roomscope import (SPEC 12): every format round-trips a session's
spans, logs and metric points and the session itself; files in the OpenTelemetry Collector's
file-exporter format import; bad lines are reported one by one and the rest imported."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import DEFAULTS, make_settings, make_tagger, read_store
from opentelemetry.trace import Status, StatusCode
from otel_sdk import pipeline
from otlp_factory import trace_request
from test_otlp_json import logs as rich_logs
from test_otlp_json import metrics as rich_metrics
from test_otlp_json import traces as rich_traces

from collector.auth import create_token
from collector.otlp_files import sniff_signal
from query.cli import main
from query.http.serving import serving_thread

FORMATS = ("otlp-json", "otlp-proto", "parquet")
RICH = "s-1"  # every field and value type (tests/test_otlp_json.py), sent as protobuf
SDK = "sdk-session"  # the real SDK exporters over OTLP/HTTP
TABLES = ("spans", "logs", "metric_points")
ROOMSCOPE = str(Path(sys.executable).with_name("roomscope"))
SESSION_COLUMNS = "* EXCLUDE (source, ended_at)"  # an import makes explicit, still-active rows


def _send_sdk(http_url: str) -> None:
    resource = {"service.name": "agent", "room": "lobby", "session.id": SDK}
    p = pipeline("http", http_url, "", resource)
    tracer = p.tracer()
    attrs = {"n": 3, "f": 1.5, "b": True, "l": [1, 2], "s": "007", "t": "true"}
    with tracer.start_as_current_span("turn", attributes=attrs) as span:
        span.add_event("thinking", {"tokens": 12})
        with tracer.start_as_current_span("tool.search") as child:
            child.set_status(Status(StatusCode.ERROR, "no results"))
    p.logger().warning("disk at %d%%", 91)
    meter = p.meter()
    meter.create_counter("requests").add(3, {"route": "/a"})
    meter.create_histogram("latency", unit="ms").record(12.5)
    meter.create_up_down_counter("queue").add(-2)
    p.shutdown()
    # A room but no session id: the collector infers the session.
    q = pipeline("http", http_url, "", {"service.name": "kitchen-bot", "room": "kitchen"})
    with q.tracer().start_as_current_span("inferred.turn"):
        pass
    q.logger().error("oops")
    q.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store holding the rich session, the SDK's session and an inferred one (collector
    stopped, so --db can read it)."""
    db = tmp_path_factory.mktemp("export") / "source.duckdb"
    thread = serving_thread(make_settings(db))
    collector = thread.start()
    http_url = f"http://127.0.0.1:{collector.ports['http']}"
    try:
        with httpx.Client(timeout=30) as client:
            for signal, request in (
                ("traces", rich_traces()),
                ("logs", rich_logs()),
                ("metrics", rich_metrics()),
            ):
                r = client.post(
                    f"{http_url}/v1/{signal}",
                    content=request.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                )
                assert r.status_code == 200, r.text
        _send_sdk(http_url)
    finally:
        thread.stop()
    ((inferred,),) = read_store(db, "SELECT session_id FROM sessions WHERE room = 'kitchen'")
    return {"db": db, "sessions": [RICH, SDK, inferred], "inferred": inferred}


def cli(*args: str, input: bytes | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def rows(db: Path, table: str, session_id: str, drop_session_key: bool = False) -> list[str]:
    """The session's rows of ``table``, every column but received_at, in a stable order."""
    columns = [
        c
        for (c,) in read_store(db, f"SELECT column_name FROM (DESCRIBE {table})")
        if c != "received_at"
    ]
    found = read_store(
        db, f"SELECT {', '.join(columns)} FROM {table} WHERE session_id = ?", [session_id]
    )
    out = []
    for row in found:
        record = dict(zip(columns, row, strict=True))
        if drop_session_key and record.get("resource_attributes"):
            record["resource_attributes"].pop("session", None)
        out.append(repr(sorted(record.items())))
    return sorted(out)


def session_row(db: Path, session_id: str) -> list[tuple]:
    return read_store(
        db, f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?", [session_id]
    )


def export(db: Path, session_id: str, fmt: str, out: Path) -> None:
    r = cli("--db", str(db), "session", "export", session_id, "--format", fmt, "-o", str(out))
    assert r.exit_code == 0, r.output


def assert_same_session(a: Path, b: Path, session_id: str, inferred: bool) -> None:
    counts = {}
    for table in TABLES:
        before = rows(a, table, session_id)
        # An inferred session's id goes out as a resource attribute (tagging.session_keys[0])
        after = rows(b, table, session_id, drop_session_key=inferred)
        assert after == before, table
        counts[table] = len(before)
    assert session_row(b, session_id) == session_row(a, session_id)
    assert counts["spans"] and counts["logs"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_round_trips_every_session(
    source: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    files = []
    for i, sid in enumerate(source["sessions"]):
        out = tmp_path / f"s{i}.{fmt}"
        export(source["db"], sid, fmt, out)
        files.append(str(out))
    target = tmp_path / "target.duckdb"
    r = cli("import", *files, "--db", str(target), "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["sessions"] == 3 and summary["rejected"] == 0 and summary["bad"] == 0
    for sid in source["sessions"]:
        assert_same_session(source["db"], target, sid, inferred=sid == source["inferred"])
    stored = read_store(target, "SELECT count(*) FROM sessions")[0][0]
    assert stored == 3


def test_export_formats_are_the_documented_ones(source: dict[str, Any], tmp_path: Path) -> None:
    export(source["db"], RICH, "otlp-json", tmp_path / "x.jsonl")
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    keys = [next(iter(json.loads(line))) for line in lines]
    assert keys == ["resourceSpans", "resourceLogs", "resourceMetrics"]
    span = json.loads(lines[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "5b8efff798038103d269b633813fc60c"  # hex, as the Collector writes
    assert span["kind"] == 2  # enums as integers
    typed = {a["key"]: a["value"] for a in span["attributes"]}
    assert typed["turn"] == {"intValue": "7"} and typed["ok"] == {"boolValue": True}
    assert typed["score"] == {"doubleValue": 0.25} and typed["who"] == {"stringValue": "ann"}
    assert "arrayValue" in typed["tags"] and "kvlistValue" in typed["nested"]

    export(source["db"], RICH, "otlp-proto", tmp_path / "x.bin")
    data = (tmp_path / "x.bin").read_bytes()
    signals, at = [], 0
    while at < len(data):
        (size,) = struct.unpack(">I", data[at : at + 4])
        signals.append(sniff_signal(data[at + 4 : at + 4 + size]))
        at += 4 + size
    assert at == len(data) and signals == ["traces", "logs", "metrics"]

    export(source["db"], RICH, "parquet", tmp_path / "pq")
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == [
        "logs.parquet",
        "metric_points.parquet",
        "spans.parquet",
    ]


def test_export_streams_in_chunks(source: dict[str, Any]) -> None:
    from collector.store.reads import open_reader
    from query.library.otlp_export import export_otlp

    con = open_reader(str(source["db"]), DEFAULTS.get("store.memory_limit"))
    try:
        lines = list(export_otlp(con, RICH, "otlp-json", make_tagger(), chunk=1))
    finally:
        con.close()
    # one record per request: 2 spans, 8 log records, 5 metric points
    per_line = [json.loads(line) for line in lines]
    assert len(per_line) == 2 + 8 + 5


def test_export_over_the_api_matches_the_file(source: dict[str, Any], tmp_path: Path) -> None:
    thread = serving_thread(make_settings(source["db"]))
    collector = thread.start()
    api = f"http://127.0.0.1:{collector.ports['api']}"
    try:
        for fmt in ("otlp-json", "otlp-proto"):
            out = tmp_path / f"remote.{fmt}"
            r = cli("--server", api, "session", "export", SDK, "--format", fmt, "-o", str(out))
            assert r.exit_code == 0, r.output
        r = cli(
            "--server",
            api,
            "session",
            "export",
            SDK,
            "--format",
            "parquet",
            "-o",
            str(tmp_path / "pq"),
        )
        assert r.exit_code == 0, r.output
        bad = httpx.get(f"{api}/api/v1/sessions/{SDK}/export", params={"format": "xml"})
        assert bad.status_code == 400 and "unknown export format" in bad.json()["error"]
        bad = httpx.get(f"{api}/api/v1/sessions/{SDK}/export", params={"format": "parquet"})
        assert bad.status_code == 400 and "table=" in bad.json()["error"]
        bad = httpx.get(f"{api}/api/v1/sessions/{SDK}/export", params={"fmt": "x"})
        assert bad.status_code == 400 and "unknown parameters" in bad.json()["error"]
        missing = httpx.get(f"{api}/api/v1/sessions/nope/export")
        assert missing.status_code == 404 and missing.json()["error"].startswith("no session")
        ok = httpx.get(f"{api}/api/v1/sessions/{SDK}/export")
        assert ok.headers["content-type"].startswith("application/x-ndjson")
    finally:
        thread.stop()
    for fmt, files in (
        ("otlp-json", [tmp_path / "remote.otlp-json"]),
        ("otlp-proto", [tmp_path / "remote.otlp-proto"]),
        ("parquet", [tmp_path / "pq"]),
    ):
        target = tmp_path / f"{fmt}.duckdb"
        r = cli("import", *map(str, files), "--db", str(target))
        assert r.exit_code == 0, r.output
        assert_same_session(source["db"], target, SDK, inferred=False)


def test_import_into_a_running_collector_over_otlp_http(
    source: dict[str, Any], tmp_path: Path, start_collector: Any
) -> None:
    export(source["db"], RICH, "otlp-proto", tmp_path / "rich.bin")
    b = start_collector(db=tmp_path / "b.duckdb")
    r = cli("import", str(tmp_path / "rich.bin"), "--otlp", b.http_url, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["records"] == {"spans": 2, "logs": 8, "metric_points": 5}
    # another process: --db names the store the collector holds, the hint says where to send
    rich = str(tmp_path / "rich.bin")
    proc = subprocess.run(
        [ROOMSCOPE, "import", rich, "--db", str(b.db)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and "in use" in proc.stderr and "--otlp" in proc.stderr
    # the configured store is in use: the records go to the configured OTLP/HTTP port
    env = {
        **os.environ,
        "ROOMSCOPE_STORE_PATH": str(b.db),
        "ROOMSCOPE_SERVER_HTTP_PORT": str(b.collector.ports["http"]),
    }
    proc = subprocess.run(
        [ROOMSCOPE, "import", rich, "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert f"sending to {b.http_url}" in proc.stderr
    assert json.loads(proc.stdout)["records"]["spans"] == 2
    r = cli("--server", b.api_url, "import", str(tmp_path / "rich.bin"))
    assert r.exit_code == 2 and "--otlp" in r.output
    b.stop()
    assert read_store(b.db, "SELECT count(*) FROM spans")[0][0] == 4  # imported twice
    assert read_store(b.db, "SELECT span_count FROM sessions") == [(4,)]


def _collector_file_lines() -> tuple[list[bytes], dict[str, Any]]:
    """Requests encoded by the OpenTelemetry SDK's own OTLP encoders, written as the
    Collector's file exporter writes them: protobuf JSON with hex ids and integer enums."""
    import base64

    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    resource = Resource.create({"service.name": "filebot", "room": "attic", "session": "fx-1"})
    spans = InMemorySpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tp.get_tracer("file")
    with (
        tracer.start_as_current_span("outer", attributes={"k": 1}) as outer,
        tracer.start_as_current_span("inner"),
    ):
        pass
    logs = InMemoryLogRecordExporter()
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    import logging

    log = logging.getLogger("collector-file-test")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=lp))
    log.warning("from a file")
    reader = InMemoryMetricReader()
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    mp.get_meter("file").create_counter("files").add(5)
    requests = [
        encode_spans(spans.get_finished_spans()),
        encode_logs(logs.get_finished_logs()),
        encode_metrics(reader.get_metrics_data()),
    ]

    def hex_ids(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    node[k] = base64.b64decode(v).hex()
                else:
                    hex_ids(v)
        elif isinstance(node, list):
            for v in node:
                hex_ids(v)

    lines = []
    for request in requests:
        doc = json.loads(json_format.MessageToJson(request, use_integers_for_enums=True))
        hex_ids(doc)
        lines.append(json.dumps(doc).encode())
    trace_id = format(outer.get_span_context().trace_id, "032x")
    return lines, {"trace_id": trace_id}


@pytest.mark.parametrize("compressed", [False, True])
def test_import_of_a_collector_file_exporter_file(tmp_path: Path, compressed: bool) -> None:
    lines, expect = _collector_file_lines()
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / ("otel.jsonl.gz" if compressed else "otel.jsonl")
    path.write_bytes(gzip.compress(data) if compressed else data)
    target = tmp_path / "t.duckdb"
    r = cli("import", str(path), "--db", str(target))
    assert r.exit_code == 0, r.output
    assert "imported 4 records (spans 2, logs 1, metric_points 1)" in r.stderr
    spans = read_store(target, "SELECT name, trace_id, room, session_id FROM spans ORDER BY name")
    assert spans == [
        ("inner", expect["trace_id"], "attic", "fx-1"),
        ("outer", expect["trace_id"], "attic", "fx-1"),
    ]
    assert read_store(target, "SELECT body, session_id FROM logs") == [("from a file", "fx-1")]
    assert read_store(target, "SELECT name, value FROM metric_points") == [("files", 5.0)]
    assert read_store(target, "SELECT span_count, log_count FROM sessions") == [(2, 1)]


def test_bad_lines_are_reported_one_by_one_and_the_rest_imported(tmp_path: Path) -> None:
    good = json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "room", "value": {"stringValue": "r"}}]},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "name": "ok",
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000001000000000",
                                },
                                {  # a record the flattener rejects: the others stay
                                    "traceId": "5b8eff",
                                    "spanId": "eee19b7ec3c1b175",
                                    "name": "short id",
                                },
                            ]
                        }
                    ],
                }
            ]
        }
    )
    lines = [
        good,
        "{not json",
        json.dumps({"hello": "world"}),
        good.replace("5b8efff798038103d269b633813fc60c", "zz"),
        "",
        good.replace('"ok"', '"ok again"').replace("eee19b7ec3c1b174", "eee19b7ec3c1b176"),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    frames = tmp_path / "truncated.bin"
    body = rich_traces().SerializeToString()
    frames.write_bytes(struct.pack(">I", len(body)) + body + struct.pack(">I", 999) + b"abc")
    target = tmp_path / "t.duckdb"
    r = cli("import", str(path), str(frames), "--db", str(target))
    assert r.exit_code == 1
    err = r.stderr
    assert f"{path}:1: 1 record(s) rejected: span 'short id': trace_id has 3 bytes" in err
    assert f"{path}:2: invalid JSON" in err
    assert f"{path}:3: not an OTLP export request" in err
    assert f"{path}:4: span.traceId is not hex" in err
    assert f"{path}:6: 1 record(s) rejected" in err
    assert f"{frames}: message 2: truncated: 3 of 999 bytes" in err
    places = [line.split(": ")[0] for line in err.splitlines() if line.startswith("  ")]
    assert places == [f"  {path}:{n}" for n in (1, 2, 3, 4, 6)] + [f"  {frames}"]  # file order
    names = [n for (n,) in read_store(target, "SELECT name FROM spans ORDER BY name")]
    assert names == ["ok", "ok again", "tool.search", "turn"]
    r = cli("import", str(tmp_path / "missing.jsonl"), "--db", str(target))
    assert r.exit_code == 1 and "cannot read" in r.stderr


def test_signals_of_length_prefixed_messages_are_sniffed() -> None:
    for signal, request in (
        ("traces", rich_traces()),
        ("logs", rich_logs()),
        ("metrics", rich_metrics()),
    ):
        assert sniff_signal(request.SerializeToString()) == signal
    assert sniff_signal(b"\xff\xff\xff") is None


def test_export_errors_are_clean(source: dict[str, Any], tmp_path: Path) -> None:
    r = cli("--db", str(source["db"]), "session", "export", "nope", "-o", str(tmp_path / "x"))
    assert r.exit_code == 1 and "no session 'nope'" in r.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    r = cli("--db", str(source["db"]), "session", "export", RICH, "--format", "parquet")
    assert r.exit_code == 2 and "-o DIR" in r.output
    r = cli("--db", str(source["db"]), "session", "export", RICH)  # to stdout
    assert r.exit_code == 0 and len(r.stdout_bytes.splitlines()) == 3


def test_export_and_import_with_auth_stay_in_the_token_s_project(
    start_collector: Any, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.toml"
    tokens = {
        f"{p}-{s}": create_token(path, p, s) for p in ("alpha", "beta") for s in ("ingest", "query")
    }
    rc = start_collector(**{"auth.enabled": True, "auth.tokens_file": str(path)})
    for seed, project in ((1, "alpha"), (2, "beta")):
        # the data claims project "default": the ingest token's project wins
        body = trace_request(8, session=f"{project}-s", project="default", seed=seed)
        headers = {
            "Content-Type": "application/x-protobuf",
            "Authorization": f"Bearer {tokens[project + '-ingest']}",
        }
        r = httpx.post(
            f"{rc.http_url}/v1/traces", content=body.SerializeToString(), headers=headers
        )
        assert r.status_code == 200
    url = f"{rc.api_url}/api/v1/sessions/alpha-s/export"
    assert httpx.get(url).status_code == 401
    alpha = {"Authorization": f"Bearer {tokens['alpha-query']}"}
    beta_url = f"{rc.api_url}/api/v1/sessions/beta-s/export"
    assert httpx.get(beta_url, headers=alpha).status_code == 404
    r = httpx.get(url, headers=alpha)
    assert r.status_code == 200
    (line,) = r.content.splitlines()
    resource = json.loads(line)["resourceSpans"][0]["resource"]["attributes"]
    # the forced project goes out as the first of tagging.project_keys
    assert {"key": "project", "value": {"stringValue": "alpha"}} in resource
    export_file = tmp_path / "alpha.jsonl"
    export_file.write_bytes(r.content)
    r = cli("import", str(export_file), "--otlp", rc.http_url)
    assert r.exit_code == 1 and f"refused by {rc.http_url}" in r.stderr, r.stderr
    r = cli(
        "import", str(export_file), "--otlp", rc.http_url, "--ingest-token", tokens["beta-ingest"]
    )
    assert r.exit_code == 0, r.output
    assert rc.query("SELECT project, count(*) FROM spans GROUP BY 1 ORDER BY 1") == [
        ("alpha", 8),
        ("beta", 16),  # an ingest token stamps its project whatever the file says
    ]


def test_progress_counts_every_byte_of_every_file(source: dict[str, Any], tmp_path: Path) -> None:
    from collector.file_import import StoreSink, import_files

    export(source["db"], RICH, "otlp-json", tmp_path / "a.jsonl")
    export(source["db"], SDK, "parquet", tmp_path / "pq")
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress((tmp_path / "a.jsonl").read_bytes()))
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz", tmp_path / "pq"]
    steps: list[int] = []
    sink = StoreSink(make_settings(tmp_path / "t.duckdb"))
    summary = import_files([str(p) for p in paths], sink, make_tagger(), steps.append)
    assert not summary.failed and summary.sessions == {RICH, SDK}
    files = [paths[0], paths[1], *sorted(paths[2].iterdir())]
    assert sum(steps) == sum(f.stat().st_size for f in files)
    assert all(step > 0 for step in steps)
