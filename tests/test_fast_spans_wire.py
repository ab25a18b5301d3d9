"""The C decoder against upb + flatten_spans on hand-made wire forms (merging, oneof switching,
unknown fields, corrupt and non-UTF-8 bytes, nesting), and its double formatting (Python's
repr, exactly)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from test_fast_spans import (
    GOOD_IDS,
    STR_ATTR,
    assert_same,
    c_path,
    ln,
    python_path,
    tag,
    varint,
    wrap_span,
)

from collector import fast_spans
from collector.errors import DecodeError

pytestmark = pytest.mark.skipif(not fast_spans.AVAILABLE, reason="C extension not built")

# --- hand-made wire forms: merging, oneof switching, unknown fields ---------------------------


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
