"""Forwarding (SPEC 12) against real servers on free ports: roomscope A forwards to roomscope B
over OTLP/HTTP and to a gRPC OTLP receiver of the test's own. Every record A committed reaches
them with its project, room and session (inferred ones included); an outage of B, or A killed
with SIGKILL, loses nothing; a full queue drops the oldest batches and counts them; an upstream
refusing a batch for good is not retried forever."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import grpc
import httpx
import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import make_store, make_tagger
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otel_sdk import pipeline
from otlp_factory import trace_request
from reliability import SIGNALS, build_request, http_send, new_rids, start_serve, wait_until

from collector.decode import decode_body
from collector.errors import SettingsError
from collector.settings import load_settings
from collector.store import SessionPlan
from query.cli import main

RNG = random.Random(26)
# One record per rid, and its tags: what B (or the gRPC receiver) must hold of A's.
TAGGED = {
    "spans": "SELECT attributes['rid'], project, room, session_id FROM spans",
    "logs": "SELECT attributes['rid'], project, room, session_id FROM logs",
    "metric_points": "SELECT attributes['rid'], project, room, session_id FROM metric_points",
}


def forward_to(**urls: str) -> dict[str, Any]:
    return {"forward.endpoints": {name: {"url": url} for name, url in urls.items()}}


def tagged(rc: Any) -> dict[str, set[tuple]]:
    return {table: set(rc.query(sql)) for table, sql in TAGGED.items()}


def send_all(url: str, n: int = 20) -> list[str]:
    """One request per signal of ``n`` records each (room r1, project p, no session id)."""
    rids = []
    with httpx.Client(timeout=10) as client:
        for signal in SIGNALS:
            batch = new_rids(signal, n)
            response = http_send(client, url, signal, build_request(signal, batch, RNG))
            assert response.status_code == 200, response.text
            rids += batch
    return rids


def status(api_url: str) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{api_url}/api/v1/status", timeout=10)
    assert answer.status_code == 200, answer.text
    return {e["endpoint"]: e for e in answer.json()["endpoints"]}


# -- a gRPC OTLP receiver of the test's own -----------------------------------------------


class GrpcReceiver:
    """The three OTLP Export methods; keeps (rid, project, room, session) per signal table."""

    SERVICES: ClassVar[dict[str, tuple[str, Any]]] = {
        "opentelemetry.proto.collector.trace.v1.TraceService": ("spans", ExportTraceServiceRequest),
        "opentelemetry.proto.collector.logs.v1.LogsService": ("logs", ExportLogsServiceRequest),
        "opentelemetry.proto.collector.metrics.v1.MetricsService": (
            "metric_points",
            ExportMetricsServiceRequest,
        ),
    }

    def __init__(self) -> None:
        self.records: dict[str, set[tuple]] = {t: set() for t in TAGGED}
        self.metadata: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        for service, (table, message) in self.SERVICES.items():
            handler = grpc.method_handlers_generic_handler(
                service,
                {"Export": grpc.unary_unary_rpc_method_handler(self._export(table, message))},
            )
            self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _export(self, table: str, message: Any) -> Any:
        def export(body: bytes, context: grpc.ServicerContext) -> bytes:
            request = message.FromString(body)
            with self._lock:
                self.metadata.append(dict(context.invocation_metadata()))
                for resource, items in _flatten(request):
                    res = {kv.key: kv.value.string_value for kv in resource.attributes}
                    tags = (res.get("project"), res.get("room"), res.get("session"))
                    for item in items:
                        own = {kv.key: kv.value.string_value for kv in item.attributes}
                        self.records[table].add((own["rid"], *tags))
            return b""

        return export

    def stop(self) -> None:
        self.server.stop(None)


def _flatten(request: Any) -> Iterator[tuple[Any, list[Any]]]:
    if isinstance(request, ExportTraceServiceRequest):
        for rs in request.resource_spans:
            yield rs.resource, [s for ss in rs.scope_spans for s in ss.spans]
    elif isinstance(request, ExportLogsServiceRequest):
        for rl in request.resource_logs:
            yield rl.resource, [r for sl in rl.scope_logs for r in sl.log_records]
    else:
        for rm in request.resource_metrics:
            points = [p for sm in rm.scope_metrics for m in sm.metrics for p in m.gauge.data_points]
            yield rm.resource, points


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    receiver = GrpcReceiver()
    yield receiver
    receiver.stop()


# -- a scripted OTLP/HTTP upstream ----------------------------------------------------------


@pytest.fixture
def http_upstream() -> Iterator[Any]:
    """start(status) -> (url, seen): answers every POST with ``status``; ``seen`` counts them."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int) -> tuple[str, list[str]]:
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(self.path)
                body = b'{"error": "scripted refusal"}' if status != 200 else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the tests ------------------------------------------------------------------------------


def test_a_forwards_every_committed_record_with_its_tags_to_b_and_a_grpc_receiver(
    start_collector: Any, tmp_path: Path, grpc_receiver: GrpcReceiver
) -> None:
    b = start_collector(tmp_path / "b.duckdb")
    endpoints = {
        "b": {"url": b.http_url},
        "g": {"url": f"grpc://127.0.0.1:{grpc_receiver.port}", "headers": {"x-team": "obs"}},
    }
    a = start_collector(tmp_path / "a.duckdb", **{"forward.endpoints": endpoints})
    # Raw requests (a room, no session: A infers one) and a real SDK pipeline (an explicit
    # session), over both of A's receivers.
    send_all(a.http_url)
    sdk = pipeline(
        "grpc", a.http_url, a.grpc_endpoint, {"service.name": "sdk", "room": "r2", "session": "s-1"}
    )
    tracer, logger = sdk.tracer(), sdk.logger()
    for i in range(5):
        with tracer.start_as_current_span("step", attributes={"rid": f"sdk-span-{i}"}):
            logger.info("line", extra={"rid": f"sdk-log-{i}"})
    sdk.shutdown()

    expected = tagged(a)
    assert len(expected["spans"]) == 25 and len(expected["logs"]) == 25
    assert len(expected["metric_points"]) == 20
    inferred = {s for _, _, room, s in expected["spans"] if room == "r1"}
    assert len(inferred) == 1 and None not in inferred  # A inferred r1's session
    assert {s for _, _, room, s in expected["spans"] if room == "r2"} == {"s-1"}
    wait_until(lambda: tagged(b) == expected, 30, "B to hold every record of A with its tags")
    wait_until(lambda: grpc_receiver.records == expected, 30, "the gRPC receiver to hold them")
    assert all(m.get("x-team") == "obs" for m in grpc_receiver.metadata)

    endpoints_status = status(a.api_url)
    for name in ("b", "g"):
        e = endpoints_status[name]
        assert e["active"] and e["sent_records"] == 70 and e["dropped_batches"] == 0
        assert e["queued_batches"] == 0 and e["last_error"] is None
    # Sent everywhere: the queue holds nothing any more.
    wait_until(lambda: a.query("SELECT count(*) FROM forward_outbox") == [(0,)], 10, "cleanup")


def test_nothing_is_lost_while_b_is_down_for_10_seconds(
    start_collector: Any, tmp_path: Path
) -> None:
    b_db = tmp_path / "b.duckdb"
    b = start_collector(b_db)
    port = b.collector.ports["http"]
    a = start_collector(tmp_path / "a.duckdb", **forward_to(b=b.http_url))
    first = send_all(a.http_url)
    before = tagged(a)
    wait_until(lambda: tagged(b) == before, 30, "the first batches at B")
    b.stop()

    during = send_all(a.http_url)  # acknowledged by A while B is down
    wait_until(lambda: status(a.api_url)["b"]["last_error"] is not None, 30, "a send to fail")
    assert status(a.api_url)["b"]["queued_records"] == len(during)
    time.sleep(10)  # the outage
    b = start_collector(b_db, **{"server.http_port": port})
    expected = tagged(a)
    wait_until(lambda: tagged(b) == expected, 60, "B to get what A queued meanwhile")
    assert sum(len(v) for v in expected.values()) == len(first) + len(during)
    e = status(a.api_url)["b"]
    assert e["queued_batches"] == 0 and e["dropped_batches"] == 0 and e["sent_records"] == 120


def test_records_committed_before_a_sigkill_reach_b_after_the_restart(
    start_collector: Any, tmp_path: Path
) -> None:
    b_port = free_port()
    b_url = f"http://127.0.0.1:{b_port}"
    a_db = tmp_path / "a.duckdb"
    settings = {"forward.endpoints": json.dumps({"b": {"url": b_url}})}
    a = start_serve(a_db, settings)
    try:
        send_all(a.http_url)
        # A is forwarding (B does not answer yet: every batch waits, retried) when it dies.
        wait_until(lambda: status(a.api_url)["b"]["last_error"] is not None, 30, "a retry")
        assert status(a.api_url)["b"]["queued_batches"] == 3
    finally:
        a.kill()
    b = start_collector(tmp_path / "b.duckdb", **{"server.http_port": b_port})
    a = start_serve(a_db, settings)
    try:
        send_all(a.http_url)  # after the restart
        wait_until(lambda: sum(len(v) for v in tagged(b).values()) == 120, 60, "every record at B")
        assert status(a.api_url)["b"]["sent_records"] == 120
    finally:
        a.terminate()
        a.proc.wait(30)
    assert {t: len(v) for t, v in tagged(b).items()} == {
        "spans": 40,
        "logs": 40,
        "metric_points": 40,
    }


def test_a_full_queue_drops_the_oldest_batches_and_counts_them(
    start_collector: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: every batch stays queued
    a = start_collector(
        tmp_path / "a.duckdb", **forward_to(up=down), **{"forward.max_queue_bytes": 30_000}
    )
    with caplog.at_level(logging.WARNING, logger="roomscope.forward"):
        for _ in range(6):
            send_all(a.http_url, 50)
    e = status(a.api_url)["up"]
    assert e["dropped_batches"] > 0 and e["sent_batches"] == 0
    assert e["queued_batches"] + e["dropped_batches"] == 18
    assert e["queued_records"] + e["dropped_records"] == 18 * 50
    assert 0 < e["queued_bytes"] <= 30_000
    # The oldest went: what is left is the newest batches, in order.
    seqs = [s for (s,) in a.query("SELECT seq FROM forward_outbox ORDER BY seq")]
    assert seqs == list(range(19 - len(seqs), 19))
    assert any("forwarding queue full" in r.getMessage() for r in caplog.records)

    # roomscope status says the same through the API (--server) and the CLI's table.
    out = CliRunner().invoke(main, ["--server", a.api_url, "status", "-o", "json"])
    assert out.exit_code == 0, out.output
    (listed,) = json.loads(out.output)["endpoints"]
    assert listed["dropped_batches"] == e["dropped_batches"]
    table = CliRunner().invoke(main, ["--server", a.api_url, "status"])
    assert table.exit_code == 0 and "up" in table.output and "DROPPED" in table.output
    # and from the store file once A has stopped (--db)
    a.stop()
    out = CliRunner().invoke(main, ["--db", str(a.db), "status", "-o", "json"])
    assert out.exit_code == 0, out.output
    (stored,) = json.loads(out.output)["endpoints"]
    assert stored["dropped_batches"] == e["dropped_batches"]
    assert stored["queued_batches"] == e["queued_batches"]


@pytest.mark.parametrize("refusal", [400, 500])
def test_an_upstream_refusing_a_batch_for_good_is_not_retried(
    start_collector: Any, tmp_path: Path, http_upstream: Any, refusal: int
) -> None:
    url, seen = http_upstream(refusal)
    a = start_collector(tmp_path / "a.duckdb", **forward_to(up=url))
    send_all(a.http_url)
    wait_until(lambda: status(a.api_url)["up"]["dropped_batches"] == 3, 30, "3 refusals")
    e = status(a.api_url)["up"]
    assert e["dropped_records"] == 60 and e["sent_batches"] == 0 and e["queued_batches"] == 0
    assert e["last_error"] == f"HTTP {refusal}: scripted refusal"
    time.sleep(1.0)  # would a retry come? (the first retry of a retryable answer: 0.5 s)
    assert seen == ["/v1/traces", "/v1/logs", "/v1/metrics"]


def test_a_retryable_answer_is_retried_until_the_batch_is_taken(
    start_collector: Any, tmp_path: Path, http_upstream: Any
) -> None:
    url, seen = http_upstream(503)
    a = start_collector(tmp_path / "a.duckdb", **forward_to(up=url))
    send_all(a.http_url, 5)
    wait_until(lambda: len(seen) >= 4, 30, "retries of the first batch")
    e = status(a.api_url)["up"]
    assert e["last_error"].startswith("HTTP 503") and e["dropped_batches"] == 0
    assert e["queued_batches"] == 3 and set(seen) == {"/v1/traces"}  # in order: traces first


@pytest.mark.parametrize(
    "endpoints, problem",
    [
        ({"x": {"url": "ftp://host:1"}}, "url must be http(s)://HOST:PORT"),
        ({"x": {"url": "http://host:1", "token": "t"}}, "needs url (and optional headers)"),
        ({"x": {"url": "http://host:1", "headers": {"a": 1}}}, "headers must be a table"),
        ({"x": "http://host:1"}, "needs a table per endpoint name"),
    ],
)
def test_bad_forward_endpoints_are_refused_with_the_reason(
    endpoints: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SettingsError, match=r"forward\.endpoints") as exc:
        load_settings(env={"ROOMSCOPE_FORWARD_ENDPOINTS": json.dumps(endpoints)})
    assert problem in str(exc.value)


def test_status_without_forwarding_lists_no_endpoint(collector: Any) -> None:
    assert status(collector.api_url) == {}
    out = CliRunner().invoke(main, ["--server", collector.api_url, "status"])
    assert out.exit_code == 0 and "no forwarding endpoints" in out.output


class _FailingPlan(SessionPlan):
    """A session plan whose rows cannot be written: the append's transaction rolls back."""

    def apply(self, con: Any) -> None:
        raise ValueError("session rows refused")


def test_a_batch_is_queued_in_the_transaction_of_its_append(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.duckdb")
    store.open()
    try:
        store.outbox_open({"up": "http://127.0.0.1:9"}, 1 << 20)
        body = trace_request(8).SerializeToString()
        decoded = decode_body("traces", body, "protobuf", make_tagger())
        tables = {"spans": [decoded.table], **{k: [v] for k, v in decoded.side.items()}}
        with pytest.raises(ValueError):
            store.append(tables, _FailingPlan())
        cur = store.cursor()
        assert cur.execute("SELECT count(*) FROM forward_outbox").fetchall() == [(0,)]
        assert cur.execute("SELECT count(*) FROM spans").fetchall() == [(0,)]
        store.append(tables)
        (batch,) = store.outbox_take("up", 10)
        assert batch.seq == 1 and batch.signal == "spans" and batch.records == 8
        assert set(batch.tables) == {"span_data", "resources", "attribute_keysets"}
        store.outbox_done("up", 1, (1, 8), (0, 0), None)
        assert cur.execute("SELECT count(*) FROM forward_outbox").fetchall() == [(0,)]
        cur.close()
    finally:
        store.close()


def test_spans_written_as_wire_format_parse_to_the_message_builders_request() -> None:
    from test_otlp_json import traces as rich_traces

    from collector.forward_build import build_forward, build_with_messages

    tagger = make_tagger()
    bodies = [rich_traces().SerializeToString()]
    for i in range(3):  # an inferred session, then explicit ones
        bodies.append(trace_request(64, seed=i, session="s" if i else None).SerializeToString())
    decoded = [decode_body("traces", body, "protobuf", tagger) for body in bodies]
    tables = {
        "span_data": pa.concat_tables([d.table for d in decoded]),
        "resources": pa.concat_tables([d.side["resources"] for d in decoded]),
        "attribute_keysets": pa.concat_tables([d.side["attribute_keysets"] for d in decoded]),
    }
    signal, wire, records = build_forward(tables, tagger)
    assert (signal, records) == ("traces", 2 + 3 * 64)
    _, built, _ = build_with_messages(tables, ("project", "room", "session"))
    assert ExportTraceServiceRequest.FromString(wire) == ExportTraceServiceRequest.FromString(built)
    assert len(wire) == len(built)


def test_a_batch_that_cannot_be_built_is_dropped_and_counted(
    start_collector: Any, tmp_path: Path, http_upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.forwarder import Forwarder

    real = Forwarder._build
    calls: list[int] = []

    def first_fails(self: Forwarder, batch: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("boom")
        return real(self, batch)

    monkeypatch.setattr(Forwarder, "_build", first_fails)
    url, seen = http_upstream(200)
    a = start_collector(tmp_path / "a.duckdb", **forward_to(up=url))
    send_all(a.http_url)
    wait_until(lambda: status(a.api_url)["up"]["sent_batches"] == 2, 30, "the other batches")
    e = status(a.api_url)["up"]
    assert e["dropped_batches"] == 1 and e["dropped_records"] == 20
    assert e["last_error"] == "cannot build a request: boom"
    assert seen == ["/v1/logs", "/v1/metrics"]


def test_the_queue_keeps_payloads_in_segment_files_and_deletes_them_once_sent(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.duckdb"
    spool = tmp_path / "s.duckdb.forward"
    body = trace_request(8).SerializeToString()
    decoded = decode_body("traces", body, "protobuf", make_tagger())
    tables = {"spans": [decoded.table], **{k: [v] for k, v in decoded.side.items()}}

    store = make_store(db)
    store.open()
    store.outbox_open({"up": "http://127.0.0.1:9"}, 1 << 20)
    store.append(tables)
    store.append(tables)
    assert len(list(spool.glob("*.spool"))) == 1
    store.close()

    store = make_store(db)  # a restart: the queue and its payloads are still there
    store.open()
    try:
        store.outbox_open({"up": "http://127.0.0.1:9"}, 1 << 20)
        first, second = store.outbox_take("up", 10)
        assert (first.seq, second.seq) == (1, 2) and first.tables.keys() == second.tables.keys()
        assert first.tables["span_data"].equals(decoded.table)
        store.outbox_done("up", 2, (2, 16), (0, 0), None)
        store.append(tables)  # a new segment after the restart; the old one is unused now
        assert [p.name for p in spool.glob("*.spool")] == [f"{3:020d}.spool"]
        # A payload lost with its file (an operating-system crash) reads as a batch without
        # tables, which the forwarder drops and counts (test above).
        (spool / f"{3:020d}.spool").unlink()
        (lost,) = store.outbox_take("up", 10)
        assert lost.seq == 3 and lost.tables == {}
    finally:
        store.close()
