"""Hostile input: random and mutated OTLP protobuf and JSON, for all three signals, at the decoder
and at the OTLP/HTTP endpoint. Nothing escapes as a 500 or a crash: every answer is 200 (with
partial_success where records were rejected), 400, 413 or 415, and the store holds exactly the
records that were accepted."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import grpc
import httpx
import pytest
from conftest import make_settings
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from reliability import SIGNALS, TABLE, build_request, to_otlp_json

from collector.decode import SIGNALS as DECODE_SIGNALS
from collector.decode import decode_body
from collector.errors import DecodeError
from collector.server import CollectorThread
from collector.tagging import Tagger
from query.http.serving import serving_thread

ALLOWED = {200, 400, 413, 415}
CTYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}
TAGGER = Tagger.from_settings(make_settings(Path("unused.duckdb")))
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- seeds: valid requests with every kind of value ----------------------------------------


def rich_request(signal: str, seed: int):
    rnd = random.Random(seed)
    req = build_request(signal, [f"seed-{seed}-{i}" for i in range(3)], rnd)
    values = [
        AnyValue(int_value=-(2**63)),
        AnyValue(double_value=float("nan")),
        AnyValue(double_value=float("-inf")),
        AnyValue(bool_value=True),
        AnyValue(bytes_value=b"\x00\xff"),
        AnyValue(array_value={"values": [AnyValue(string_value="a"), AnyValue(int_value=1)]}),
        AnyValue(kvlist_value={"values": [KeyValue(key="k", value=AnyValue(string_value="v"))]}),
    ]
    extra = [KeyValue(key=f"x{i}", value=v) for i, v in enumerate(values)]
    if signal == "traces":
        for sp in req.resource_spans[0].scope_spans[0].spans:
            sp.attributes.extend(extra)
            ev = sp.events.add(time_unix_nano=sp.start_time_unix_nano, name="ev")
            ev.attributes.extend(extra)
            sp.links.add(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8))
    elif signal == "logs":
        for lr in req.resource_logs[0].scope_logs[0].log_records:
            lr.attributes.extend(extra)
            lr.trace_id, lr.span_id = rnd.randbytes(16), rnd.randbytes(8)
    else:
        metrics = req.resource_metrics[0].scope_metrics[0].metrics
        metrics[0].gauge.data_points[0].attributes.extend(extra)
        h = metrics.add(name="h").histogram
        h.aggregation_temporality = 2
        h.data_points.add(time_unix_nano=5, count=3, bucket_counts=[1, 2], explicit_bounds=[1.0])
        e = metrics.add(name="e").exponential_histogram
        e.data_points.add(time_unix_nano=5, count=1, scale=2).positive.bucket_counts.append(1)
        s = metrics.add(name="s").summary
        s.data_points.add(time_unix_nano=5, count=1, sum=1.0).quantile_values.add(quantile=0.5)
        metrics.add(name="sum").sum.data_points.add(time_unix_nano=5, as_int=-3)
    return req


SEEDS = {(sig, enc): [] for sig in SIGNALS for enc in CTYPES}
for _sig in SIGNALS:
    for _seed in range(3):
        _req = rich_request(_sig, _seed)
        SEEDS[(_sig, "protobuf")].append(_req.SerializeToString())
        SEEDS[(_sig, "json")].append(to_otlp_json(_req))


def expected(signal: str, body: bytes, encoding: str) -> tuple[int | None, int]:
    """What the decoder makes of a body: (accepted records, rejected) or (None, 0) if invalid."""
    try:
        d = decode_body(signal, body, encoding, TAGGER)
    except DecodeError:
        return None, 0
    return d.accepted, d.rejected


# -- strategies ----------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["-5", "99999999999999999999", "NaN", "Infinity", "ff" * 8, "zz", ""]),
)
json_values = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_protobuf(draw, signal: str) -> bytes:
    body = bytearray(draw(st.sampled_from(SEEDS[(signal, "protobuf")])))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if not body:
            break
        pos = draw(st.integers(0, len(body) - 1))
        if op == "flip":
            body[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del body[pos:]
        elif op == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del body[pos : pos + draw(st.integers(1, 16))]
    return bytes(body)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


@st.composite
def mutated_json(draw, signal: str) -> bytes:
    doc = json.loads(draw(st.sampled_from(SEEDS[(signal, "json")])))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = draw(json_values)
    text = json.dumps(doc, allow_nan=True)
    if draw(st.booleans()):  # sometimes also break the JSON text itself
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.text(max_size=4)) + text[pos + draw(st.integers(0, 4)) :]
    return text.encode("utf-8", "surrogatepass")


def bodies(encoding: str, signal: str):
    if encoding == "protobuf":
        return st.one_of(st.binary(max_size=300), mutated_protobuf(signal))
    return st.one_of(
        st.binary(max_size=100),
        json_values.map(lambda v: json.dumps(v).encode()),
        mutated_json(signal),
    )


# -- the decoder directly ------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@FUZZ
@given(data=st.data())
def test_decoder_returns_a_batch_or_raises_decode_error(signal, encoding, data):
    body = data.draw(bodies(encoding, signal))
    try:
        d = decode_body(signal, body, encoding, TAGGER)
    except DecodeError:
        return
    assert d.table.num_rows == d.accepted >= 0
    assert d.signal == TABLE[signal]


# -- the HTTP endpoint ---------------------------------------------------------------------


class Endpoint:
    def __init__(self, thread: CollectorThread):
        self.thread = thread
        self.collector = thread.collector
        self.url = f"http://127.0.0.1:{self.collector.ports['http']}"
        self.client = httpx.Client(timeout=60)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.collector.ports['grpc']}")

    def counts(self) -> dict[str, int]:
        cur = self.collector.store.cursor()
        try:
            return {
                s: cur.execute(f"SELECT count(*) FROM {TABLE[s]}").fetchone()[0] for s in SIGNALS
            }
        finally:
            cur.close()

    def post(self, signal: str, body: bytes, ctype: str, **headers: str) -> httpx.Response:
        h = {"content-type": ctype, **headers}
        r = self.client.post(f"{self.url}/v1/{signal}", content=body, headers=h)
        assert r.status_code in ALLOWED, (r.status_code, r.text[:300])
        return r

    def check(self, signal: str, body: bytes, encoding: str) -> int:
        """POST a body; the answer must match what the decoder makes of it. Returns accepted."""
        accepted, rejected = expected(signal, body, encoding)
        r = self.post(signal, body, CTYPES[encoding])
        if accepted is None:
            assert r.status_code == 400, r.text[:300]
            return 0
        assert r.status_code == 200, r.text[:300]
        response = DECODE_SIGNALS[signal][1]()
        if encoding == "json":
            json_format.Parse(r.content, response)
        else:
            response.ParseFromString(r.content)
        field = {"traces": "rejected_spans", "logs": "rejected_log_records"}.get(
            signal, "rejected_data_points"
        )
        assert getattr(response.partial_success, field) == rejected
        assert bool(response.partial_success.error_message) == bool(rejected)
        return accepted


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    db = tmp_path_factory.mktemp("hostile") / "hostile.duckdb"
    thread = serving_thread(make_settings(db))
    thread.start()
    ep = Endpoint(thread)
    yield ep
    ep.client.close()
    ep.channel.close()
    thread.stop()


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@FUZZ
@given(data=st.data())
def test_endpoint_answers_only_200_400_413_415_and_stores_what_it_accepted(
    endpoint, encoding, data
):
    signal = data.draw(st.sampled_from(SIGNALS))
    body = data.draw(bodies(encoding, signal))
    before = endpoint.counts()
    accepted = endpoint.check(signal, body, encoding)
    after = endpoint.counts()
    assert after[signal] - before[signal] == accepted
    assert all(after[s] == before[s] for s in SIGNALS if s != signal)


GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_grpc_answers_ok_or_invalid_argument_and_stores_what_it_accepted(endpoint, data):
    """The same bodies as raw gRPC messages: OK or INVALID_ARGUMENT, never UNKNOWN/INTERNAL."""
    signal = data.draw(st.sampled_from(SIGNALS))
    body = data.draw(bodies("protobuf", signal))
    accepted, _ = expected(signal, body, "protobuf")
    before = endpoint.counts()
    call = endpoint.channel.unary_unary(GRPC_METHODS[signal])
    try:
        call(body, timeout=60)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    if accepted is None:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert code == grpc.StatusCode.OK
    assert endpoint.counts()[signal] - before[signal] == (accepted or 0)


@pytest.mark.slow
def test_content_types_and_encodings_are_answered_415(endpoint):
    for ctype in ["text/plain", "", "application/grpc", "application/x-protobuf-bad"]:
        assert endpoint.post("traces", b"\x0a\x00", ctype).status_code == 415
    r = endpoint.post("logs", b"{}", "application/json", **{"content-encoding": "br"})
    assert r.status_code == 415


# -- the named hostile cases ---------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def deep_kvlist_protobuf(depth: int) -> bytes:
    """An ExportLogsServiceRequest whose one attribute is a kvlist within a kvlist ``depth`` deep,
    encoded by hand (the protobuf runtime itself refuses to build it)."""
    value = _ld(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        value = _ld(6, _ld(1, _ld(1, b"k") + _ld(2, value)))  # AnyValue.kvlist_value.values[0]
    attribute = _ld(1, b"deep") + _ld(2, value)
    return _ld(1, _ld(2, _ld(2, _ld(6, attribute))))  # resource_logs.scope_logs.log_records


def deep_kvlist_json(depth: int) -> bytes:
    value = b'{"kvlistValue":{"values":[{"key":"k","value":' * depth
    value += b'{"stringValue":"leaf"}' + b"}]}}" * depth
    return (
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"deep","value":%s}],"body":%s}]}]}]}'
        % (
            value,
            value,
        )
    )


def log_json(record: dict) -> bytes:
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}).encode()


def span_json(**fields) -> bytes:
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "s", **fields}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def metric_json(point: dict) -> bytes:
    metric = {"name": "m", "gauge": {"dataPoints": [point]}}
    return json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}).encode()


def many_attributes(n: int) -> bytes:
    req = build_request("logs", ["many"], random.Random(0))
    lr = req.resource_logs[0].scope_logs[0].log_records[0]
    lr.attributes.extend(KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(n))
    return req.SerializeToString()


def big_strings(encoding: str) -> bytes:
    req = build_request("traces", ["big"], random.Random(0))
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    sp.name = "n" * 10_000_000
    sp.attributes.append(KeyValue(key="big", value=AnyValue(string_value="v" * 5_000_000)))
    return req.SerializeToString() if encoding == "protobuf" else to_otlp_json(req)


def invalid_utf8_protobuf() -> bytes:
    req = build_request("logs", ["utf8"], random.Random(0))
    req.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "@@@@"
    return req.SerializeToString().replace(b"@@@@", b"\xff\xfe\xc0\x80")


HOSTILE = {
    "deep kvlist protobuf": ("logs", "protobuf", lambda: deep_kvlist_protobuf(1000)),
    "deep kvlist json": ("logs", "json", lambda: deep_kvlist_json(1000)),
    "deep kvlist json 100k": ("logs", "json", lambda: deep_kvlist_json(100_000)),
    "100k attributes": ("logs", "protobuf", lambda: many_attributes(100_000)),
    "10 MB strings protobuf": ("traces", "protobuf", lambda: big_strings("protobuf")),
    "10 MB strings json": ("traces", "json", lambda: big_strings("json")),
    "invalid utf-8 protobuf": ("logs", "protobuf", invalid_utf8_protobuf),
    "invalid utf-8 json": ("logs", "json", lambda: b'{"resourceLogs":[{"x":"\xff\xfe"}]}'),
    "lone surrogate json": ("logs", "json", lambda: log_json({"body": {"stringValue": "\ud800"}})),
    "NaN and Inf values": (
        "metrics",
        "json",
        lambda: metric_json(
            {"asDouble": "NaN", "attributes": [{"key": "i", "value": {"doubleValue": "-Infinity"}}]}
        ),
    ),
    "bare NaN in JSON": ("logs", "json", lambda: b'{"resourceLogs":[{"scopeLogs":[NaN]}]}'),
    "negative timestamp": ("traces", "json", lambda: span_json(startTimeUnixNano="-5")),
    "overflowing uint64 timestamp": (
        "traces",
        "json",
        lambda: span_json(startTimeUnixNano="99999999999999999999"),
    ),
    "timestamp past 2262": ("traces", "json", lambda: span_json(endTimeUnixNano=str(2**64 - 1))),
    "overflowing int64 value": (
        "logs",
        "json",
        lambda: log_json({"body": {"intValue": "99999999999999999999"}}),
    ),
    "negative log time": ("logs", "json", lambda: log_json({"timeUnixNano": -5})),
    "empty protobuf traces": ("traces", "protobuf", lambda: b""),
    "empty protobuf logs": ("logs", "protobuf", lambda: b""),
    "empty protobuf metrics": ("metrics", "protobuf", lambda: b""),
    "empty json body": ("metrics", "json", lambda: b""),
    "empty json object": ("traces", "json", lambda: b"{}"),
    "empty resource lists": ("logs", "json", lambda: b'{"resourceLogs":[{},{"scopeLogs":[{}]}]}'),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HOSTILE))
def test_named_hostile_case(endpoint, case):
    signal, encoding, make = HOSTILE[case]
    body = make()
    before = endpoint.counts()
    accepted = endpoint.check(signal, body, encoding)
    assert endpoint.counts()[signal] - before[signal] == accepted


@pytest.mark.slow
def test_oversized_and_gzip_bomb_bodies_are_answered_413(endpoint):
    limit = endpoint.collector.settings.get("limits.max_body_bytes")
    r = endpoint.post("logs", b"\x00" * (limit + 1), CTYPES["protobuf"])
    assert r.status_code == 413
    bomb = gzip.compress(b"\x00" * (limit + 1024))
    r = endpoint.post("logs", bomb, CTYPES["protobuf"], **{"content-encoding": "gzip"})
    assert r.status_code == 413
    r = endpoint.post("logs", b"not gzip", CTYPES["json"], **{"content-encoding": "gzip"})
    assert r.status_code == 400
    with pytest.raises(grpc.RpcError) as err:
        endpoint.channel.unary_unary(GRPC_METHODS["logs"])(b"\x00" * (limit + 1), timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
