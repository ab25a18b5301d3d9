"""The C decoder (collector._otlpfast via collector.fast_spans) against upb + flatten_spans.

Equivalence: generated requests give the very same table, rejections and messages.
Fuzz: random and mutated bodies never crash; both paths fail together or agree exactly.
"""

from __future__ import annotations

import math
import os
import struct

import pytest
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
TAGGER = Tagger()
ODD_TAGGER = Tagger(["p", "project"], ["r", ""], ["s"], "fallback")
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


# --- hand-made wire forms: merging, oneof switching, unknown fields ---------------------------


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


@pytest.mark.parametrize(
    "body",
    [
        # singular messages that occur twice are merged
        wrap_span(
            GOOD_IDS,
            resource=ln(1, ln(1, ln(1, b"room") + ln(2, ln(1, b"a"))))
            + ln(1, ln(1, ln(1, b"service.name") + ln(2, ln(1, b"svc")))),
        ),
        wrap_span(GOOD_IDS + ln(15, ln(2, b"m1") + tag(3, 0) + varint(2)) + ln(15, ln(2, b"m2"))),
        wrap_span(GOOD_IDS, scope=ln(1, ln(1, b"n")) + ln(1, ln(2, b"v") + ln(3, ln(1, b"a")))),
        # a KeyValue's value given twice: arrays merge, a scalar in between resets
        wrap_span(
            GOOD_IDS
            + ln(
                9,
                ln(1, b"k")
                + ln(2, ln(5, ln(1, tag(3, 0) + b"\x01")))
                + ln(2, ln(5, ln(1, tag(2, 0) + b"\x01"))),
            )
        ),
        wrap_span(
            GOOD_IDS
            + ln(
                9,
                ln(1, b"k")
                + ln(2, ln(5, ln(1, tag(3, 0) + b"\x01")))
                + ln(2, ln(1, b"s"))
                + ln(2, ln(5, b"")),
            )
        ),
        wrap_span(
            GOOD_IDS
            + ln(
                9,
                ln(1, b"k")
                + ln(2, ln(6, ln(1, ln(1, b"a"))) + ln(5, b"") + ln(6, ln(1, ln(1, b"b")))),
            )
        ),
        wrap_span(
            GOOD_IDS
            + ln(
                9,
                ln(1, b"k")
                + ln(2, ln(6, ln(1, ln(1, b"a"))) + ln(6, ln(1, ln(1, b"a") + ln(2, b"")))),
            )
        ),
        # key twice (last wins), duplicate attribute keys, wrong wire types are unknown fields
        wrap_span(
            GOOD_IDS
            + ln(9, ln(1, b"a") + ln(1, b"room") + ln(2, ln(1, b"r1")))
            + STR_ATTR
            + ln(9, ln(1, b"room") + ln(2, ln(1, b"r2")))
        ),
        wrap_span(
            GOOD_IDS
            + tag(5, 0)
            + b"\x05"
            + tag(6, 2)
            + b"\x01\x02"
            + tag(15, 0)
            + b"\x01"
            + tag(7, 5)
            + b"abcd"
            + tag(16, 1)
            + b"12345678"
        ),
        # unknown fields of every wire type, groups included, at every level
        wrap_span(
            GOOD_IDS
            + tag(99, 3)
            + tag(1, 0)
            + b"\x01"
            + tag(2, 3)
            + tag(2, 4)
            + tag(99, 4)
            + tag(98, 1)
            + b"12345678"
            + tag(97, 5)
            + b"1234"
            + ln(96, b"\xff\xfe")
        ),
        tag(1000, 3) + tag(1000, 4) + wrap_span(GOOD_IDS + STR_ATTR),
        # events / links interleaved with attributes; event time defaults to the span start
        wrap_span(
            GOOD_IDS
            + ln(11, ln(2, b"e1"))
            + STR_ATTR
            + tag(7, 1)
            + struct.pack("<Q", 5)
            + ln(13, ln(1, b"\x03" * 16) + ln(2, b"\x04" * 8) + ln(3, b"ts"))
            + STR_ATTR
            + ln(11, tag(1, 1) + struct.pack("<Q", 2**64 - 1))
        ),
        # 10-byte varints with high bits, 5-byte lengths
        wrap_span(
            GOOD_IDS + tag(6, 0) + b"\xff" * 9 + b"\x7f" + tag(10, 0) + b"\xff" * 9 + b"\x01"
        ),
        wrap_span(GOOD_IDS + tag(5, 2) + b"\x81\x80\x80\x80\x00" + b"n"),
        b"",
    ],
)
def test_wire_forms(body):
    assert_same(body)
    assert not isinstance(c_path(body), DecodeError)


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01",  # field 0
        tag(5, 6),
        tag(5, 7),
        tag(5, 4),  # end group without a start
        tag(5, 3) + tag(6, 4),  # mismatched end group
        tag(5, 3),  # group never ends
        b"\x88\x80\x80\x80\x10\x00",  # tag beyond 32 bits
        tag(5, 0) + b"\xff" * 10 + b"\x01",  # 11-byte varint
        tag(5, 2) + b"\x80\x80\x80\x80\x80\x00",  # 6-byte length
        tag(5, 2) + varint(10) + b"abc",
        tag(5, 1) + b"1234",
        tag(5, 5) + b"12",
        ln(1, tag(5, 4)),
        ln(1, tag(5, 3)) + tag(5, 4),
        wrap_span(GOOD_IDS + tag(7, 1) + b"\x01\x02"),
    ],
)
def test_corrupt_wire_is_refused_on_both_paths(body):
    assert not assert_same(body)
    assert str(c_path(body)) == str(python_path(body))
    assert "Wire format was corrupt" in str(c_path(body))


BAD_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xe2\x82", b"\x80"]


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize(
    "make",
    [
        lambda b: wrap_span(GOOD_IDS + ln(5, b)),  # span name
        lambda b: wrap_span(GOOD_IDS + ln(3, b)),  # trace_state
        lambda b: wrap_span(GOOD_IDS + ln(9, ln(1, b))),  # attribute key
        lambda b: wrap_span(GOOD_IDS + ln(9, ln(2, ln(5, ln(1, ln(1, b)))))),  # nested string
        lambda b: wrap_span(GOOD_IDS + ln(9, ln(2, ln(1, b) + tag(3, 0) + b"\x01"))),  # overwritten
        lambda b: wrap_span(GOOD_IDS + ln(15, ln(2, b))),  # status message
        lambda b: wrap_span(GOOD_IDS + ln(11, ln(2, b))),  # event name
        lambda b: wrap_span(GOOD_IDS + ln(13, ln(3, b))),  # link trace_state
        lambda b: wrap_span(b"", scope=ln(1, ln(1, b))),  # scope name
        lambda b: ln(1, ln(3, b)),  # schema_url
        lambda b: ln(1, ln(1, ln(3, ln(3, b)))),  # resource entity_refs id_keys
        lambda b: ln(1, ln(2, ln(2, ln(1, b"\x01" * 16) + ln(5, b)))),  # a span that is rejected
    ],
)
def test_invalid_utf8_is_refused_on_both_paths(make, bad):
    body = make(bad)
    assert not assert_same(body)
    assert str(c_path(body)) == str(python_path(body))
    assert "bad UTF-8" in str(c_path(body))
    # the same bytes where no string is expected are fine
    assert assert_same(wrap_span(GOOD_IDS + ln(9, ln(2, ln(7, bad)))))


def _nested(k: int, leaf: AnyValue) -> bytes:
    v = leaf
    for _ in range(k):
        v = AnyValue(array_value=ArrayValue(values=[v]))
    sp = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, attributes=[KeyValue(key="a", value=v)])
    req = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[sp])])]
    )
    return req.SerializeToString()


def test_nesting_limit_matches_upb():
    assert assert_same(_nested(47, AnyValue(double_value=math.nan)))
    assert not assert_same(_nested(48, AnyValue(int_value=1)))
    assert "MaxDepth" in str(c_path(_nested(48, AnyValue(int_value=1))))
    # groups count too: 100 levels below the root are fine, 101 are not
    assert assert_same(tag(5, 3) * 100 + tag(5, 4) * 100)
    assert not assert_same(tag(5, 3) * 101 + tag(5, 4) * 101)
    deep = ln(1, ln(2, ln(2, GOOD_IDS + ln(9, ln(2, tag(9, 3) * 95 + tag(9, 4) * 95)))))
    assert assert_same(deep)
    deeper = ln(1, ln(2, ln(2, GOOD_IDS + ln(9, ln(2, tag(9, 3) * 96 + tag(9, 4) * 96)))))
    assert not assert_same(deeper)


# --- fuzz ----------------------------------------------------------------------------------


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
        with pytest.raises(DecodeError, match="bad UTF-8"):
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


def test_every_string_field_of_the_installed_protos_is_utf8_checked():
    """Walks the installed descriptors, so a string field added by a newer opentelemetry-proto
    that the C decoder does not know about shows up here."""
    string, message = 9, 11  # FieldDescriptor.TYPE_STRING / TYPE_MESSAGE
    seen: set[str] = set()
    todo = [(ExportTraceServiceRequest.DESCRIPTOR, ())]
    checked = 0
    while todo:
        desc, path = todo.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for f in desc.fields:
            if f.type == string:
                body = ln(f.number, b"\xc3\x28")
                for num in reversed(path):
                    body = ln(num, body)
                assert not assert_same(body), (desc.full_name, f.name)
                assert "bad UTF-8" in str(c_path(body)), (desc.full_name, f.name)
                checked += 1
            elif f.type == message:
                todo.append((f.message_type, (*path, f.number)))
    assert checked >= 15


# The C decoder formats doubles itself (no GIL, see double_repr in _otlpfast.c); attribute
# values must stay exactly Python's repr, which the pure-Python flattener writes.
EDGE_DOUBLES = [
    0.0, -0.0, 1.0, 0.1, 0.3, 2 / 3, 12.5, 100.0, 1e15, 1e16, 9999999999999998.0, 1e22,
    0.0001, 0.00001, 1.5e-7, 1e100, 1.7976931348623157e308, 2.2250738585072014e-308,
    2.225073858507201e-308, 5e-324, -5e-324, 2.3615506564439e-310, -5.70491076367e-312,
]  # fmt: skip


@pytest.mark.parametrize("x", EDGE_DOUBLES)
def test_c_double_text_is_python_repr_at_the_edges(x):
    assert fast_spans._otlpfast.double_repr(x) == repr(x)


@settings(max_examples=3000, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(0, 2**64 - 1)
    .map(lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0])
    .filter(math.isfinite)
)
def test_c_double_text_is_python_repr(x):
    assert fast_spans._otlpfast.double_repr(x) == repr(x)


def test_c_double_text_is_python_repr_at_every_power_of_two():
    """Where the spacing of doubles changes, the correctly rounded 16 digits may not read back
    while the decimal on x's other side does (2**-24 is 5.960464477539063e-08)."""
    for k in range(-1074, 1024):
        for x in (2.0**k, -(2.0**k), math.nextafter(2.0**k, math.inf)):
            assert fast_spans._otlpfast.double_repr(x) == repr(x)
