"""The C decoder (collector._otlpfast via collector.fast_spans) against upb + flatten_spans.

Equivalence: generated requests give the very same table, rejections and messages.
Fuzz: random and mutated bodies never crash; both paths fail together or agree exactly.
Hand-made wire forms and the C double formatting: tests/test_fast_spans_wire.py.
"""

from __future__ import annotations

import os

import pytest
from conftest import make_tagger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collector import fast_spans
from collector.columns import MAX_TS
from collector.decode import parse_protobuf
from collector.errors import DecodeError
from collector.flatten_spans import flatten_spans
from collector.tagging import Tagger

pytestmark = pytest.mark.skipif(not fast_spans.AVAILABLE, reason="C extension not built")

RECEIVED = 1_700_000_000_123_456_789
TAGGER = make_tagger()
ODD_TAGGER = Tagger(
    project_keys=["p", "project"],
    room_keys=["r", ""],
    session_keys=["s"],
    default_project="fallback",
)
FAST = settings(
    max_examples=int(os.environ.get("FAST_SPANS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def python_path(body: bytes, tagger: Tagger = TAGGER):
    try:
        return flatten_spans(parse_protobuf("traces", body), tagger, RECEIVED)
    except DecodeError as exc:
        return exc


def c_path(body: bytes, tagger: Tagger = TAGGER):
    try:
        return fast_spans.flatten_spans_bytes(body, tagger, RECEIVED)
    except DecodeError as exc:
        return exc


def assert_same(body: bytes, tagger: Tagger = TAGGER) -> bool:
    """Both paths agree; returns whether the body decoded.

    Refusals must agree, not their wording: for a body broken in several ways at once upb may
    name a different problem (it checks a string's UTF-8 before the end of its submessage).
    """
    py, c = python_path(body, tagger), c_path(body, tagger)
    if isinstance(py, DecodeError) or isinstance(c, DecodeError):
        assert type(py) is type(c), (py, c)
        assert str(py).split(": ")[0] == str(c).split(": ")[0]
        return False
    c.table.validate(full=True)
    if not py.table.equals(c.table):
        for name in py.table.column_names:
            assert py.table[name].equals(c.table[name]), (
                name,
                py.table[name].to_pylist()[:3],
                c.table[name].to_pylist()[:3],
            )
    assert py.table.schema == c.table.schema
    assert (py.rejected, py.errors) == (c.rejected, c.errors)
    return True


# --- generated requests --------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "k",
        "k2",
        "",
        "service.name",
        "project",
        "meshagent.project",
        "room",
        "room.name",
        "session",
        "session.id",
        "p",
        "r",
        "s",
        "ключ",
        'q"uote\\',
        "ctl\n\x01\x7f",
        "emoji 🎉",
    ]
)
TEXT = st.one_of(
    st.sampled_from(["", "a", "lobby", "acme", 'x"y', "\\", "\x00\x1f\u2028", "é🎉"]),
    st.text(max_size=12),
)
DOUBLES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e16, 1e-5, 1e22, 5e-324, 1.7976931348623157e308, 0.1]),
)
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 2**63 - 1, -(2**63)]))


def scalar_values() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        st.just(AnyValue()),
        TEXT.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        INT64.map(lambda i: AnyValue(int_value=i)),
        DOUBLES.map(lambda d: AnyValue(double_value=d)),
        st.binary(max_size=10).map(lambda b: AnyValue(bytes_value=b)),
        st.integers(0, 5).map(lambda i: AnyValue(string_value_strindex=i)),
    )


def _extend(children):
    return st.one_of(
        st.lists(children, max_size=4).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(KEYS, children), max_size=4).map(
            lambda kvs: AnyValue(
                kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])
            )
        ),
    )


ANY = st.recursive(scalar_values(), _extend, max_leaves=5)
KV = st.builds(lambda k, v: KeyValue(key=k, value=v), KEYS, ANY) | KEYS.map(
    lambda k: KeyValue(key=k)
)
ATTRS = st.lists(KV, max_size=4)
TAG_ATTRS = st.lists(
    st.builds(
        lambda k, v: KeyValue(key=k, value=AnyValue(string_value=v)),
        KEYS,
        st.sampled_from(["", "acme", "lobby", "s1", "p2"]),
    ),
    max_size=4,
)


def ids(size: int):
    return st.one_of(
        st.binary(min_size=size, max_size=size),
        st.binary(min_size=size, max_size=size),
        st.sampled_from([b"", bytes(size), b"\x01" * (size - 1), b"\x01" * (size + 1)]),
    )


TIMES = st.one_of(
    st.sampled_from([0, 1, MAX_TS, MAX_TS + 1, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
    st.integers(1_600_000_000 * 10**9, 1_800_000_000 * 10**9),
)
U32 = st.integers(0, 2**32 - 1)
ENUM = st.one_of(st.integers(-3, 8), st.integers(-(2**31), 2**31 - 1))


@st.composite
def events(draw):
    return Span.Event(
        time_unix_nano=draw(TIMES),
        name=draw(TEXT),
        attributes=draw(ATTRS),
        dropped_attributes_count=draw(U32),
    )


@st.composite
def links(draw):
    good = draw(st.integers(0, 9)) > 0
    return Span.Link(
        trace_id=draw(st.binary(min_size=16, max_size=16).filter(any) if good else ids(16)),
        span_id=draw(st.binary(min_size=8, max_size=8).filter(any) if good else ids(8)),
        trace_state=draw(TEXT),
        attributes=draw(ATTRS),
        dropped_attributes_count=draw(U32),
        flags=draw(U32),
    )


@st.composite
def spans(draw):
    good = draw(st.integers(0, 4)) > 0
    return Span(
        trace_id=draw(st.binary(min_size=16, max_size=16) if good else ids(16)),
        span_id=draw(st.binary(min_size=8, max_size=8) if good else ids(8)),
        parent_span_id=draw(st.one_of(st.just(b""), ids(8))),
        trace_state=draw(TEXT),
        name=draw(TEXT),
        kind=draw(ENUM),
        start_time_unix_nano=draw(TIMES),
        end_time_unix_nano=draw(TIMES),
        attributes=draw(st.one_of(ATTRS, TAG_ATTRS)) + draw(TAG_ATTRS),
        dropped_attributes_count=draw(U32),
        events=draw(st.lists(events(), max_size=2)),
        dropped_events_count=draw(U32),
        links=draw(st.lists(links(), max_size=2)),
        dropped_links_count=draw(U32),
        status=draw(
            st.one_of(st.none(), st.builds(lambda m, c: Status(message=m, code=c), TEXT, ENUM))
        ),
        flags=draw(U32),
    )


@st.composite
def requests(draw):
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = ResourceSpans(schema_url=draw(TEXT))
        if draw(st.booleans()):
            rs.resource.CopyFrom(
                Resource(
                    attributes=draw(st.one_of(ATTRS, TAG_ATTRS)) + draw(TAG_ATTRS),
                    dropped_attributes_count=draw(U32),
                )
            )
        for _ in range(draw(st.integers(0, 2))):
            ss = ScopeSpans(spans=draw(st.lists(spans(), max_size=3)))
            if draw(st.booleans()):
                ss.scope.CopyFrom(
                    InstrumentationScope(
                        name=draw(TEXT), version=draw(TEXT), attributes=draw(ATTRS)
                    )
                )
            rs.scope_spans.append(ss)
        req.resource_spans.append(rs)
    return req


@FAST
@given(requests(), st.sampled_from([TAGGER, ODD_TAGGER]))
def test_generated_requests_give_the_same_table(req, tagger):
    assert assert_same(req.SerializeToString(), tagger)


def test_factory_request_is_equal():
    from otlp_factory import trace_request

    body = trace_request(512).SerializeToString()
    assert assert_same(body)
    assert fast_spans.flatten_spans_bytes(body, TAGGER, RECEIVED).accepted == 512


def test_rejections_and_messages_match():
    good_t, good_s = b"\x01" * 16, b"\x02" * 8
    sps = [
        Span(name="no trace", span_id=good_s),
        Span(name="zeros", trace_id=bytes(16), span_id=good_s),
        Span(name="short'\n", trace_id=b"\x01" * 3, span_id=good_s),
        Span(name="both\"'", trace_id=good_t, span_id=b""),
        Span(name="parent", trace_id=good_t, span_id=good_s, parent_span_id=b"\x01"),
        Span(name="late", trace_id=good_t, span_id=good_s, start_time_unix_nano=MAX_TS + 1),
        Span(name="ok", trace_id=good_t, span_id=good_s, parent_span_id=bytes(8)),
        Span(name="link", trace_id=good_t, span_id=good_s, links=[Span.Link(trace_id=good_t)]),
        Span(name="\x07🎉", trace_id=good_t, span_id=good_s, links=[Span.Link()]),
    ]
    req = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=sps)])]
    )
    assert assert_same(req.SerializeToString())
    c = c_path(req.SerializeToString())
    assert (c.accepted, c.rejected, len(c.errors)) == (1, 8, 5)


# --- protobuf wire format by hand (also for tests/test_fast_spans_wire.py) -------------------


def varint(v: int) -> bytes:
    out = b""
    while True:
        if v < 0x80:
            return out + bytes([v])
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7


def tag(num: int, wt: int) -> bytes:
    return varint(num << 3 | wt)


def ln(num: int, payload: bytes) -> bytes:
    return tag(num, 2) + varint(len(payload)) + payload


def wrap_span(span: bytes, resource: bytes = b"", scope: bytes = b"") -> bytes:
    return ln(1, resource + ln(2, scope + ln(2, span)))


GOOD_IDS = ln(1, b"\x01" * 16) + ln(2, b"\x02" * 8)
STR_ATTR = ln(9, ln(1, b"k") + ln(2, ln(1, b"v")))


@FAST
@given(st.binary(max_size=300))
def test_random_bytes(body):
    assert_same(body)


@st.composite
def mutated(draw):
    body = bytearray(draw(requests()).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "set", "insert", "splice", "delete"]))
        n = len(body)
        i = draw(st.integers(0, n))
        if op == "truncate":
            del body[i:]
        elif op in ("flip", "set") and i < n:
            body[i] = (
                body[i] ^ (1 << draw(st.integers(0, 7)))
                if op == "flip"
                else draw(st.integers(0, 255))
            )
        elif op == "insert":
            body[i:i] = draw(st.binary(min_size=1, max_size=6))
        elif op == "splice" and n:
            j = draw(st.integers(0, n))
            k = draw(st.integers(0, n))
            body[i:i] = body[min(j, k) : max(j, k)]
        elif op == "delete":
            del body[i : i + draw(st.integers(1, 4))]
    return bytes(body)


@FAST
@given(mutated())
def test_mutated_requests(body):
    assert_same(body)


# --- wiring --------------------------------------------------------------------------------


def test_decode_body_switch(monkeypatch):
    from otlp_factory import trace_request

    from collector import decode

    body = trace_request(16).SerializeToString()
    calls = []
    real = decode.fast_spans.flatten_spans_bytes
    monkeypatch.setattr(
        decode.fast_spans, "flatten_spans_bytes", lambda *a: calls.append(1) or real(*a)
    )
    fast = decode.decode_body("traces", body, "protobuf", TAGGER, fast=True)
    assert calls == [1]
    slow = decode.decode_body("traces", body, "protobuf", TAGGER, fast=False)
    assert calls == [1]
    assert fast.table.drop(["received_at"]).equals(slow.table.drop(["received_at"]))
    for flag in (True, False):
        with pytest.raises(
            DecodeError, match=r"invalid UTF-8 in a string field \(.*spans\[0\]\.name\)"
        ):
            decode.decode_body(
                "traces", wrap_span(GOOD_IDS + ln(5, b"\xff")), "protobuf", TAGGER, fast=flag
            )


def test_grpc_traces_take_the_bytes_path(collector):
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )
    from otlp_factory import trace_request

    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        req = trace_request(8, room="grpc-room")
        req.resource_spans[0].scope_spans[0].spans[0].span_id = b""
        resp = export(req.SerializeToString(), timeout=10)
        assert resp.partial_success.rejected_spans == 1
        assert "span_id is empty" in resp.partial_success.error_message
        for body in (b"\xff\xff", wrap_span(GOOD_IDS + ln(5, b"\xff"))):
            with pytest.raises(grpc.RpcError) as err:
                export(body, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rows = collector.query("SELECT count(*), any_value(room) FROM spans")
    assert rows == [(7, "grpc-room")]
