"""Where a request is decoded (collector.ingest): small protobuf trace bodies on the receiver's
event loop, everything else (larger bodies, JSON, logs, metrics) in a decode thread; the rows
are the same either way."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from otel_sdk import pipeline
from otlp_factory import trace_request
from reliability import to_otlp_json
from test_retention import logs_request

from collector import fast_spans, ingest

pytestmark = pytest.mark.skipif(not fast_spans.AVAILABLE, reason="C extension not built")

PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def decoded_on(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bool]]:
    """Each decode_body call the Ingestor makes: (signal, encoding, ran in a decode thread)."""
    calls: list[tuple[str, str, bool]] = []
    real = ingest.decode_body

    def recording(signal, body, encoding, tagger, fast=True):
        in_pool = threading.current_thread().name.startswith("roomscope-decode")
        calls.append((signal, encoding, in_pool))
        return real(signal, body, encoding, tagger, fast)

    monkeypatch.setattr(ingest, "decode_body", recording)
    return calls


def post(rc, signal: str, body: bytes, headers: dict[str, str]) -> None:
    r = httpx.post(f"{rc.http_url}/v1/{signal}", content=body, headers=headers)
    assert r.status_code == 200, r.text


def span_count(rc, session: str) -> int:
    return rc.query("SELECT count(*) FROM spans WHERE session_id = ?", [session])[0][0]


def test_small_protobuf_traces_are_decoded_inline_and_the_rest_in_a_thread(
    start_collector, decoded_on
) -> None:
    small = trace_request(8, session="small", seed=1)
    big = trace_request(64, session="big", seed=2)
    limit = len(small.SerializeToString())
    assert len(big.SerializeToString()) > limit
    rc = start_collector(**{"ingest.inline_decode_bytes": limit})

    post(rc, "traces", small.SerializeToString(), PROTOBUF)
    post(rc, "traces", big.SerializeToString(), PROTOBUF)
    json_body = to_otlp_json(trace_request(8, session="json", seed=3))
    post(rc, "traces", json_body, {"content-type": "application/json"})
    post(rc, "logs", logs_request("logs", time.time_ns(), 3).SerializeToString(), PROTOBUF)

    assert decoded_on == [
        ("traces", "protobuf", False),  # on the HTTP receiver's event loop
        ("traces", "protobuf", True),  # over inline_decode_bytes
        ("traces", "json", True),
        ("logs", "protobuf", True),  # the Python decoders are slower: never inline
    ]
    assert [span_count(rc, s) for s in ("small", "big", "json")] == [8, 64, 8]
    assert rc.query("SELECT count(*) FROM logs WHERE session_id = 'logs'") == [(3,)]


def test_zero_decodes_every_body_in_a_thread(start_collector, decoded_on) -> None:
    rc = start_collector(**{"ingest.inline_decode_bytes": 0})
    post(rc, "traces", trace_request(8, session="s", seed=4).SerializeToString(), PROTOBUF)
    assert decoded_on == [("traces", "protobuf", True)]
    assert span_count(rc, "s") == 8


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_exports_decoded_inline_arrive_whole(start_collector, decoded_on, protocol) -> None:
    rc = start_collector()
    p = pipeline(protocol, rc.http_url, rc.grpc_endpoint, {"room": "lobby", "session": "sdk"})
    try:
        tracer = p.tracer()
        with (
            tracer.start_as_current_span("outer", attributes={"tool": "search"}),
            tracer.start_as_current_span("inner"),
        ):
            pass
    finally:
        p.shutdown()
    assert ("traces", "protobuf", False) in decoded_on
    rows = rc.query(
        "SELECT name, room, attributes['tool'] FROM spans WHERE session_id = 'sdk' ORDER BY name"
    )
    assert rows == [("inner", "lobby", None), ("outer", "lobby", "search")]
