"""Issue 19, item 18: an exporter whose endpoint ends with a slash (MeshAgent appends
``/v1/traces`` to ``OTEL_ENDPOINT=http://host:4318/``) posts to ``//v1/traces``; repeated and
trailing slashes in the OTLP/HTTP paths are accepted, so nothing is lost silently."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from otel_sdk import pipeline

RESOURCE = {"service.name": "slashed", "room": "lobby", "session": "slash-1"}


def test_sdk_exporters_with_a_trailing_slash_in_the_endpoint_deliver_every_signal(
    collector: Any,
) -> None:
    """Was: 404 for //v1/traces; the SDK dropped everything and reported nothing."""
    # The SDK's HTTP exporters post to endpoint=http://127.0.0.1:PORT//v1/traces (and logs,
    # metrics), as MeshAgent's otel_config() builds them from a base URL ending in "/".
    p = pipeline("http", collector.http_url + "/", collector.grpc_endpoint, RESOURCE)
    with p.tracer().start_as_current_span("turn"):
        p.logger().warning("careful")
    p.meter().create_counter("turns").add(3)
    p.shutdown()
    rows = collector.query(
        "SELECT (SELECT count(*) FROM spans WHERE session_id = 'slash-1'),"
        " (SELECT count(*) FROM logs WHERE session_id = 'slash-1'),"
        " (SELECT max(value) FROM metric_points WHERE session_id = 'slash-1')"
    )
    assert rows == [(1, 1, 3.0)]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("//v1/traces", 200),
        ("/v1//logs", 200),
        ("///v1/metrics/", 200),
        ("/v1/traces//", 200),
        ("//v1/nope", 404),
        ("/v2//traces", 404),
    ],
)
def test_repeated_slashes_in_otlp_paths(collector: Any, path: str, status: int) -> None:
    r = httpx.post(
        collector.http_url + path,
        content=b"",  # an empty Export*ServiceRequest
        headers={"content-type": "application/x-protobuf"},
        timeout=10,
    )
    assert r.status_code == status, (path, r.status_code, r.content)
