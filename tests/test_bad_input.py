"""Every kind of bad input gets the OTLP-correct status and a message naming the problem; the
collector keeps serving afterwards and never stores half a request."""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

import duckdb
import grpc
import httpx
import pytest
from conftest import make_tagger, slow_store
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from otlp_factory import trace_request

from collector import decode
from collector.errors import DecodeError

PB = "application/x-protobuf"
SMALL_LIMIT = 64 * 1024


def post(
    rc: Any,
    body: Any,
    content_type: str = PB,
    path: str = "/v1/traces",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = {"Content-Type": content_type, **(headers or {})}
    return httpx.post(f"{rc.http_url}{path}", content=body, headers=h, timeout=30)


def message(r: httpx.Response) -> str:
    """The google.rpc.Status message of an error response, in the response's encoding."""
    if r.headers["content-type"] == PB:
        return status_pb2.Status.FromString(r.content).message
    assert r.headers["content-type"] == "application/json"
    return r.json()["message"]


def span_count(rc: Any) -> int:
    return rc.query("SELECT count(*) FROM spans")[0][0]


def assert_still_serves(rc: Any) -> None:
    """A good request after the bad one is answered 200 and its spans are stored."""
    before = span_count(rc)
    r = post(rc, trace_request(3, seed=99).SerializeToString())
    assert r.status_code == 200, r.text
    assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    assert span_count(rc) == before + 3


# -- payloads -------------------------------------------------------------------------------


def test_malformed_protobuf_is_400_naming_protobuf(collector):
    r = post(collector, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert r.status_code == 400
    assert r.headers["content-type"] == PB
    msg = message(r)
    assert "invalid protobuf" in msg and "ExportTraceServiceRequest" in msg
    assert status_pb2.Status.FromString(r.content).code == 3  # INVALID_ARGUMENT
    assert span_count(collector) == 0
    assert_still_serves(collector)


def _with_bad_utf8(request: Any, set_placeholder: Any) -> bytes:
    """``request`` serialized with the string that ``set_placeholder`` writes replaced by bytes
    that are not UTF-8 (as long, so the wire format stays intact)."""
    set_placeholder("@@@@@@")
    return request.SerializeToString().replace(b"@@@@@@", b"ok\xff\xfe\xc0\x80")


def test_invalid_utf8_in_a_string_field_is_400_naming_utf8_and_the_field(collector, monkeypatch):
    """Not just "Wire format was corrupt" (what protobuf says in some releases) or "String
    field had bad UTF-8": the reason and the field, over HTTP (the C decoder for spans,
    protobuf for logs) and gRPC."""
    spans = trace_request(3)
    target = spans.resource_spans[0].scope_spans[0].spans[1]
    bad_name = _with_bad_utf8(spans, lambda v: setattr(target, "name", v))
    logs = ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add()
    bad_body = _with_bad_utf8(logs, lambda v: setattr(record.body, "string_value", v))
    span_field = "invalid UTF-8 in a string field (resource_spans[0].scope_spans[0].spans[1].name)"
    log_field = "(resource_logs[0].scope_logs[0].log_records[0].body.string_value)"
    for path, body, named in [
        ("/v1/traces", bad_name, span_field),
        ("/v1/logs", bad_body, log_field),
    ]:
        r = post(collector, body, path=path)
        assert r.status_code == 400 and named in message(r), message(r)
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as refused:
            export(bad_name, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert span_field in refused.value.details()

    # Where protobuf's message does not name the cause, roomscope still does.
    def corrupt(*_args: Any) -> None:
        raise DecodeError("invalid protobuf: Error parsing message: Wire format was corrupt")

    monkeypatch.setattr(decode, "parse_protobuf", corrupt)
    with pytest.raises(DecodeError, match=r"invalid UTF-8 in a string field \(resource_logs"):
        decode.decode_body("logs", bad_body, "protobuf", make_tagger())
    assert span_count(collector) == 0
    assert_still_serves(collector)


def test_malformed_json_is_400_naming_json(collector):
    r = post(collector, b'{"resourceSpans": [', "application/json")
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert "invalid JSON" in message(r)
    assert_still_serves(collector)


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ([1, 2], "expected a JSON object"),
        ({"resourceSpans": {"scopeSpans": []}}, "resourceSpans must be a list"),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]},
            "startTimeUnixNano",
        ),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 12}]}]}]}, "traceId"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "xyz!"}]}]}]}, "spanId"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0a " * 16}]}]}]}, "traceId"),
        # a field name with a lone surrogate (json.loads accepts it; protobuf's upb raised
        # SystemError on it, found by test_hostile_input)
        ({"resourceSpans": [{"resource": {"\ud800": None}}]}, "not valid Unicode"),
    ],
)
def test_json_of_the_wrong_shape_is_400_naming_the_field(collector, doc, named):
    r = post(collector, json.dumps(doc).encode(), "application/json")
    assert r.status_code == 400, r.text
    assert named in message(r)
    assert span_count(collector) == 0
    assert_still_serves(collector)


def test_wrong_content_type_is_415_naming_it(collector):
    r = post(collector, b"hello", "text/plain")
    assert r.status_code == 415
    msg = message(r)
    assert "text/plain" in msg and "application/x-protobuf" in msg
    assert_still_serves(collector)


def test_unknown_content_encoding_is_415_naming_it(collector):
    body = trace_request(2).SerializeToString()
    r = post(collector, body, headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    assert "Content-Encoding 'br'" in message(r)
    assert span_count(collector) == 0
    assert_still_serves(collector)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"this is not gzip", "invalid gzip body"),
        (gzip.compress(trace_request(5).SerializeToString())[:-12], "truncated gzip body"),
    ],
)
def test_invalid_gzip_is_400(collector, body, named):
    r = post(collector, body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert named in message(r)
    assert_still_serves(collector)


def test_gzip_body_is_accepted(collector):
    r = post(
        collector,
        gzip.compress(trace_request(7).SerializeToString()),
        headers={"Content-Encoding": "gzip"},
    )
    assert r.status_code == 200
    assert span_count(collector) == 7


# -- ids and timestamps: partial success ----------------------------------------------------


def test_invalid_ids_are_rejected_through_partial_success(collector):
    req = trace_request(6, seed=1)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"\x01" * 5  # wrong length
    spans[2].span_id = bytes(8)  # all zeros
    spans[3].trace_id = bytes(16)  # all zeros
    spans[4].parent_span_id = b"\x02" * 3  # wrong length
    good = {spans[i].span_id.hex() for i in (0, 5)}
    r = post(collector, req.SerializeToString())
    assert r.status_code == 200
    ps = ExportTraceServiceResponse.FromString(r.content).partial_success
    assert ps.rejected_spans == 4
    assert "trace_id has 5 bytes, expected 16" in ps.error_message
    assert "span_id is all zeros" in ps.error_message
    assert "trace_id is all zeros" in ps.error_message
    assert "parent_span_id" in ps.error_message
    assert {r[0] for r in collector.query("SELECT span_id FROM spans")} == good
    assert_still_serves(collector)


def test_timestamps_beyond_2262_are_rejected_through_partial_success(collector):
    req = trace_request(3, seed=2)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[0].end_time_unix_nano = 2**63 + 5
    r = post(collector, req.SerializeToString())
    assert r.status_code == 200
    ps = ExportTraceServiceResponse.FromString(r.content).partial_success
    assert ps.rejected_spans == 1 and "2262" in ps.error_message
    assert span_count(collector) == 2
    assert_still_serves(collector)


@pytest.mark.parametrize(("body", "ctype"), [(b"", PB), (b"{}", "application/json")])
def test_empty_request_is_200_and_stores_nothing(collector, body, ctype):
    r = post(collector, body, ctype)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype
    if ctype == PB:
        assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    else:
        assert r.json() == {}
    assert span_count(collector) == 0
    assert_still_serves(collector)


# -- sizes ----------------------------------------------------------------------------------


@pytest.fixture
def small(start_collector: Any) -> Any:
    return start_collector(**{"limits.max_body_bytes": SMALL_LIMIT})


def _oversized() -> bytes:
    body = trace_request(400).SerializeToString()
    assert len(body) > SMALL_LIMIT
    return body


def test_body_over_limit_by_content_length_is_413(small):
    r = post(small, _oversized())
    assert r.status_code == 413
    msg = message(r)
    assert "limits.max_body_bytes" in msg and str(SMALL_LIMIT) in msg
    assert span_count(small) == 0
    assert_still_serves(small)


def test_body_over_limit_by_chunked_streaming_is_413(small):
    body = _oversized()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    r = post(small, chunks())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert "limits.max_body_bytes" in message(r)
    assert span_count(small) == 0
    assert_still_serves(small)


def _peak_rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM (Linux)
        f.write("5")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_gzip_bomb_is_413_without_inflating_it(start_collector):
    limit = 4 * 1024 * 1024
    rc = start_collector(**{"limits.max_body_bytes": limit})
    inflated = 512 * 1024 * 1024
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(c.compress(zeros) for _ in range(inflated // len(zeros))) + c.flush()
    assert len(bomb) < limit  # passes the raw size check: only inflating reveals it

    _peak_rss_reset()
    before = _peak_rss()
    t0 = time.monotonic()
    r = post(rc, bomb, headers={"Content-Encoding": "gzip"})
    elapsed = time.monotonic() - t0
    grown = _peak_rss() - before
    assert r.status_code == 413
    assert "decompressed body exceeds" in message(r) and "limits.max_body_bytes" in message(r)
    assert elapsed < 2.0, f"took {elapsed:.2f}s: the bomb was inflated"
    assert grown < 64 * 1024 * 1024, f"peak RSS grew by {grown} bytes"
    assert_still_serves(rc)


# -- paths and methods ----------------------------------------------------------------------


def test_unknown_path_is_404(collector):
    r = post(collector, trace_request(1).SerializeToString(), path="/v1/spans")
    assert r.status_code == 404
    msg = message(r)
    assert "/v1/spans" in msg and "/v1/traces" in msg
    assert_still_serves(collector)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_is_405(collector, method):
    r = httpx.request(method, f"{collector.http_url}/v1/traces", timeout=10)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert method in message(r) and "POST" in message(r)
    assert_still_serves(collector)


# -- the store never holds half a request ---------------------------------------------------


def test_a_failed_commit_leaves_no_rows_and_answers_retryably(collector, monkeypatch):
    store = collector.collector.store
    original = store._write
    seen: list[int] = []

    def failing_write(tables, also=None):
        if not tables or seen:
            return original(tables, also)

        def fault(con: duckdb.DuckDBPyConnection) -> None:
            if also is not None:
                also(con)
            # The request's rows are in the open transaction when the disk gives out.
            seen.append(con.execute("SELECT count(*) FROM spans").fetchone()[0])
            raise duckdb.IOException("Could not write file: injected fault")

        return original(tables, fault)

    monkeypatch.setattr(store, "_write", failing_write)
    r = post(collector, trace_request(20).SerializeToString())
    assert seen == [20]
    assert r.status_code == 503
    assert r.headers["retry-after"]
    assert "store cannot be written" in message(r) and "injected fault" in message(r)
    assert span_count(collector) == 0
    assert_still_serves(collector)


def test_overload_is_503_with_retry_after(start_collector, tmp_path):
    db = tmp_path / "slow.duckdb"
    rc = start_collector(db, store=slow_store(db, 1.0), **{"limits.max_queue_records": 10})
    body = trace_request(8).SerializeToString()
    with httpx.Client(timeout=30) as client, cf.ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                client.post,
                f"{rc.http_url}/v1/traces",
                content=body,
                headers={"Content-Type": PB},
            )
            for _ in range(4)
        ]
        responses = [f.result() for f in futures]
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert "write queue full" in message(busy)
    assert span_count(rc) == 8 * codes.count(200)


# -- gRPC -----------------------------------------------------------------------------------


@pytest.fixture
def grpc_stub(request: Any) -> Iterator[Any]:
    channels: list[grpc.Channel] = []

    def make(rc: Any, **options: Any) -> trace_service_pb2_grpc.TraceServiceStub:
        ch = grpc.insecure_channel(
            rc.grpc_endpoint, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        channels.append(ch)
        return trace_service_pb2_grpc.TraceServiceStub(ch)

    yield make
    for ch in channels:
        ch.close()


def test_grpc_gzip_export_works(collector, grpc_stub):
    stub = grpc_stub(collector)
    resp = stub.Export(trace_request(9), compression=grpc.Compression.Gzip, timeout=30)
    assert not resp.HasField("partial_success")
    assert span_count(collector) == 9


def test_grpc_oversized_message_is_resource_exhausted(small, grpc_stub):
    stub = grpc_stub(small)
    req = ExportTraceServiceRequest.FromString(_oversized())
    with pytest.raises(grpc.RpcError) as info:
        stub.Export(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in info.value.details()
    # Compressed under the limit, over it once inflated: refused too.
    assert len(gzip.compress(req.SerializeToString())) < SMALL_LIMIT
    with pytest.raises(grpc.RpcError) as info:
        stub.Export(req, compression=grpc.Compression.Gzip, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert span_count(small) == 0
    resp = stub.Export(trace_request(4), timeout=30)
    assert not resp.HasField("partial_success")
    assert span_count(small) == 4


def test_grpc_invalid_ids_are_partial_success(collector, grpc_stub):
    req = trace_request(4, seed=3)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[0].span_id = b"\x07" * 9
    spans[1].trace_id = bytes(16)
    resp = grpc_stub(collector).Export(req, timeout=30)
    assert resp.partial_success.rejected_spans == 2
    assert "span_id has 9 bytes, expected 8" in resp.partial_success.error_message
    assert "trace_id is all zeros" in resp.partial_success.error_message
    assert span_count(collector) == 2
    assert_still_serves(collector)
