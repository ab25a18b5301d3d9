"""Grafana's Tempo and Jaeger data sources against the query port (SPEC 9): every answer decoded
the way the data sources decode it. Tempo's JSON goes through protobuf's ``json_format.Parse``
into Tempo's messages (defined here from its documented fields) with unknown fields refused, as
Go's jsonpb does; traces through opentelemetry-proto's ``TracesData``; Jaeger's JSON is checked
against its model's field names."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BACKENDS
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from otel_sdk import pipeline
from test_query_fixtures import World, filled_world

from collector.auth import create_token

SEC = 1_000_000_000
MS = 1_000_000
PROTOBUF = {"Accept": "application/protobuf"}


# -- Tempo's messages (tempopb), from its documented fields --------------------------------------


def _tempo_messages() -> dict[str, Any]:
    f = descriptor_pb2.FieldDescriptorProto
    kv = ".opentelemetry.proto.common.v1.KeyValue"
    TRACES_DATA = ".opentelemetry.proto.trace.v1.TracesData"
    specs: dict[str, list[tuple[str, int, int, int, str]]] = {
        "Span": [
            ("spanID", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
            ("name", 2, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
            ("startTimeUnixNano", 3, f.TYPE_UINT64, f.LABEL_OPTIONAL, ""),
            ("durationNanos", 4, f.TYPE_UINT64, f.LABEL_OPTIONAL, ""),
            ("attributes", 5, f.TYPE_MESSAGE, f.LABEL_REPEATED, kv),
        ],
        "SpanSet": [
            ("spans", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".tempopb.Span"),
            ("matched", 2, f.TYPE_UINT32, f.LABEL_OPTIONAL, ""),
            ("attributes", 3, f.TYPE_MESSAGE, f.LABEL_REPEATED, kv),
        ],
        "TraceSearchMetadata": [
            ("traceID", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
            ("rootServiceName", 2, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
            ("rootTraceName", 3, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
            ("startTimeUnixNano", 4, f.TYPE_UINT64, f.LABEL_OPTIONAL, ""),
            ("durationMs", 5, f.TYPE_UINT32, f.LABEL_OPTIONAL, ""),
            ("spanSet", 6, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".tempopb.SpanSet"),
            ("spanSets", 7, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".tempopb.SpanSet"),
        ],
        "SearchMetrics": [
            ("inspectedTraces", 1, f.TYPE_UINT32, f.LABEL_OPTIONAL, ""),
            ("inspectedBytes", 2, f.TYPE_UINT64, f.LABEL_OPTIONAL, ""),
        ],
        "SearchResponse": [
            ("traces", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".tempopb.TraceSearchMetadata"),
            ("metrics", 2, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".tempopb.SearchMetrics"),
        ],
        "SearchTagsV2Scope": [
            ("name", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
            ("tags", 2, f.TYPE_STRING, f.LABEL_REPEATED, ""),
        ],
        "SearchTagsV2Response": [
            ("scopes", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".tempopb.SearchTagsV2Scope"),
        ],
        "TagValue": [
            ("type", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
            ("value", 2, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
        ],
        "SearchTagValuesV2Response": [
            ("tagValues", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".tempopb.TagValue"),
        ],
        # Field 1 is tempopb.Trace (repeated ResourceSpans = 1): wire-identical to TracesData.
        "TraceByIDResponse": [
            ("trace", 1, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, TRACES_DATA),
            ("message", 4, f.TYPE_STRING, f.LABEL_OPTIONAL, ""),
        ],
    }  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, trace_pb2):
        for dep in module.DESCRIPTOR.dependencies:
            pool.Add(descriptor_pb2.FileDescriptorProto.FromString(dep.serialized_pb))
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    fd = descriptor_pb2.FileDescriptorProto(
        name="tempo_test.proto",
        package="tempopb",
        syntax="proto3",
        dependency=[common_pb2.DESCRIPTOR.name, trace_pb2.DESCRIPTOR.name],
    )
    for name, fields in specs.items():
        msg = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(
                name=fname, number=number, type=ftype, label=label, json_name=fname
            )
            if type_name:
                field.type_name = type_name
    pool.Add(fd)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tempopb.{name}"))
        for name in specs
    }


TEMPO = _tempo_messages()


def strict(name: str, body: str) -> Any:
    """Decode as Grafana's Go code does: unknown fields are an error."""
    return json_format.Parse(body, TEMPO[name](), ignore_unknown_fields=False)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    yield from filled_world(tmp_path_factory, request)


def get(w: World, path: str, headers: dict | None = None, **params: Any) -> httpx.Response:
    return httpx.get(w.api_url + path, params=params, headers=headers, timeout=30)


def traces_of(world: World) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in world.manifest.spans:
        out.setdefault(s.trace_id, []).append(s)
    return out


# -- Tempo -------------------------------------------------------------------------------------


def test_echo_and_buildinfo(world: World) -> None:
    assert get(world, "/api/echo").status_code == 200
    info = get(world, "/api/status/buildinfo").json()
    assert info["version"].startswith("2.")


def test_search_answers_tempo_search_response_with_matching_spansets(world: World) -> None:
    q = '{ resource.service.name = "tools" && status = error }'
    r = get(world, "/api/search", q=q, limit=1000, spss=2)
    assert r.status_code == 200
    res = strict("SearchResponse", r.text)
    sent = traces_of(world)
    want = {
        tid: [s for s in spans if s.service == "tools" and s.status == "ERROR"]
        for tid, spans in sent.items()
    }
    want = {tid: m for tid, m in want.items() if m}
    assert {t.traceID for t in res.traces} == set(want)
    for t in res.traces:
        spans = sent[t.traceID]
        root = next(s for s in spans if s.name == "agent.turn")
        assert (t.rootServiceName, t.rootTraceName) == ("agent", "agent.turn")
        assert t.durationMs == root.duration_ns // MS
        assert t.startTimeUnixNano > 0
        (spanset,) = t.spanSets
        assert spanset.matched == len(want[t.traceID])
        assert {s.spanID for s in spanset.spans} <= {s.span_id for s in want[t.traceID]}
        for s in spanset.spans:
            sent_span = next(x for x in want[t.traceID] if x.span_id == s.spanID)
            assert s.durationNanos == sent_span.duration_ns
            attrs = {a.key: a.value.string_value for a in s.attributes}
            assert attrs["service.name"] == "tools"
    starts = [t.startTimeUnixNano for t in res.traces]
    assert len(starts) > 1


def test_search_limit_spss_and_time_range(world: World) -> None:
    res = strict("SearchResponse", get(world, "/api/search", q="{}", limit=3, spss=1).text)
    assert len(res.traces) == 3 and all(len(t.spanSets[0].spans) == 1 for t in res.traces)
    assert all(t.spanSets[0].matched == len(traces_of(world)[t.traceID]) for t in res.traces)
    default = strict("SearchResponse", get(world, "/api/search").text)
    assert len(default.traces) == min(20, len(traces_of(world)))
    assert max(len(t.spanSets[0].spans) for t in default.traces) == 3
    far = get(world, "/api/search", q="{}", start=1000, end=2000)
    assert strict("SearchResponse", far.text).traces == []
    for bad in ({"limit": "x"}, {"spss": 0}, {"start": "-1"}, {"tags": "a=b"}):
        r = get(world, "/api/search", **bad)
        assert r.status_code == 400 and "error" in r.json()


def test_tags_list_room_session_project_as_resource_tags_and_the_intrinsics(world: World) -> None:
    r = get(world, "/api/v2/search/tags")
    res = strict("SearchTagsV2Response", r.text)
    scopes = {s.name: set(s.tags) for s in res.scopes}
    assert {"room", "session", "project", "service.name"} <= scopes["resource"]
    assert {"tool", "llm.model"} <= scopes["span"]
    assert {"name", "status", "duration", "kind"} <= scopes["intrinsic"]
    only = strict("SearchTagsV2Response", get(world, "/api/v2/search/tags", scope="span").text)
    assert [s.name for s in only.scopes] == ["span"]


@pytest.mark.parametrize(
    "tag,expected",
    [
        ("resource.room", {"lobby", "studio", "support", "qa"}),
        ("resource.service.name", {"agent", "tools", "qa-bot"}),
        ("span.tool", {"search", "calendar", "render", "ticket.lookup", "email.send"}),
        ("resource.session", {"lobby-standup-1", "studio-render-42", "qa-1"}),
        ("name", {"agent.turn", "llm.call", "check", "probe"}),
    ],
)
def test_tag_values(world: World, tag: str, expected: set) -> None:
    res = strict("SearchTagValuesV2Response", get(world, f"/api/v2/search/tag/{tag}/values").text)
    values = {v.value for v in res.tagValues}
    assert expected <= values and all(v.type == "string" for v in res.tagValues)


def test_status_values_are_keywords(world: World) -> None:
    res = strict("SearchTagValuesV2Response", get(world, "/api/v2/search/tag/status/values").text)
    assert [(v.type, v.value) for v in res.tagValues] == [
        ("keyword", "error"), ("keyword", "ok"), ("keyword", "unset"),
    ]  # fmt: skip


def _check_traces_data(data: TracesData, sent: list) -> None:
    spans = {
        s.span_id.hex(): (rs, ss, s)
        for rs in data.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    assert set(spans) == {s.span_id for s in sent}
    for want in sent:
        rs, ss, span = spans[want.span_id]
        resource = {a.key: a.value.string_value for a in rs.resource.attributes}
        assert resource["service.name"] == want.service
        assert span.trace_id.hex() == want.trace_id and span.name == want.name
        assert span.end_time_unix_nano - span.start_time_unix_nano == want.duration_ns
        assert trace_pb2.Status.StatusCode.Name(span.status.code) == f"STATUS_CODE_{want.status}"
        kind = {"agent.turn": "SERVER", "llm.call": "CLIENT"}.get(want.name, "INTERNAL")
        assert trace_pb2.Span.SpanKind.Name(span.kind) == f"SPAN_KIND_{kind}"
        attrs = {a.key: a.value.string_value for a in span.attributes}
        assert attrs.get("tool") == want.attributes.get("tool")
        if want.name.startswith("tool.") and want.status == "ERROR":
            assert [e.name for e in span.events] == ["exception"]
            assert ss.scope.name
        if want.name != "agent.turn":
            assert len(span.parent_span_id) == 8


def test_trace_by_id_v2_is_a_trace_by_id_response_and_v1_a_bare_traces_data(world: World) -> None:
    tid, sent = next((t, s) for t, s in traces_of(world).items() if len(s) == 3)
    r = get(world, f"/api/v2/traces/{tid}", headers=PROTOBUF)
    assert r.status_code == 200 and r.headers["content-type"] == "application/protobuf"
    wrapper = TEMPO["TraceByIDResponse"].FromString(r.content)
    _check_traces_data(wrapper.trace, sent)
    r = get(world, f"/api/traces/{tid}", headers=PROTOBUF)
    assert r.status_code == 200 and r.headers["content-type"] == "application/protobuf"
    _check_traces_data(TracesData.FromString(r.content), sent)
    as_json = get(world, f"/api/v2/traces/{tid}", headers={"Accept": "application/json"})
    _check_traces_data(strict("TraceByIDResponse", as_json.text).trace, sent)
    short = tid.lstrip("0") if tid.startswith("0") else tid
    assert get(world, f"/api/v2/traces/{short}", headers=PROTOBUF).status_code == 200


def test_unknown_trace_is_a_json_404_and_a_bad_id_a_400(world: World) -> None:
    for path in ("/api/v2/traces/", "/api/traces/"):
        r = get(world, path + "ab" * 16, headers=PROTOBUF)
        assert r.status_code == 404 and "error" in r.json()
        r = get(world, path + "xyz", headers=PROTOBUF)
        assert r.status_code == 400 and "error" in r.json()


# -- Jaeger ------------------------------------------------------------------------------------

SPAN_FIELDS = {
    "traceID", "spanID", "operationName", "references", "flags", "startTime", "duration",
    "tags", "logs", "processID", "warnings",
}  # fmt: skip


def _check_jaeger_trace(trace: dict, sent: list) -> None:
    assert set(trace) == {"traceID", "spans", "processes", "warnings"}
    by_id = {s["spanID"]: s for s in trace["spans"]}
    assert set(by_id) == {s.span_id for s in sent}
    for want in sent:
        span = by_id[want.span_id]
        assert set(span) == SPAN_FIELDS
        assert span["operationName"] == want.name and span["duration"] == want.duration_ns // 1000
        assert isinstance(span["startTime"], int) and span["startTime"] > 1.5e15  # µs
        tags = {t["key"]: t for t in span["tags"]}
        assert all(set(t) == {"key", "type", "value"} for t in span["tags"])
        assert tags["room"]["value"] == want.room
        assert trace["processes"][span["processID"]]["serviceName"] == want.service
        if want.status == "ERROR":
            assert tags["error"] == {"key": "error", "type": "bool", "value": True}
        if want.name != "agent.turn":
            (ref,) = span["references"]
            assert ref["refType"] == "CHILD_OF" and ref["traceID"] == want.trace_id
            assert ref["spanID"] in by_id
        if want.name.startswith("tool.") and want.status == "ERROR":
            (log,) = span["logs"]
            assert {"key": "event", "type": "string", "value": "exception"} in log["fields"]


def test_jaeger_services_and_operations(world: World) -> None:
    body = get(world, "/api/services").json()
    assert {"agent", "tools", "qa-bot"} <= set(body["data"])
    ops = get(world, "/api/services/agent/operations").json()["data"]
    assert set(ops) == {"agent.turn", "llm.call"}
    kinds = get(world, "/api/operations", service="agent", spanKind="server").json()["data"]
    assert kinds == [{"name": "agent.turn", "spanKind": "server"}]


def test_jaeger_search_by_service_operation_tags_and_durations(world: World) -> None:
    sent = traces_of(world)
    params = {
        "service": "tools",
        "tags": json.dumps({"error": "true", "room": "lobby"}),
        "minDuration": "100ms",
        "limit": 1000,
        "lookback": "1h",
    }
    body = get(world, "/api/traces", **params).json()
    want = {
        s.trace_id
        for s in world.manifest.spans
        if s.service == "tools" and s.status == "ERROR" and s.room == "lobby"
        and s.duration_ns >= 100 * MS
    }  # fmt: skip
    assert want and {t["traceID"] for t in body["data"]} == want
    for trace in body["data"]:
        _check_jaeger_trace(trace, sent[trace["traceID"]])
    body = get(world, "/api/traces", service="agent", operation="agent.turn", limit=2).json()
    assert len(body["data"]) == 2
    body = get(world, "/api/traces", service="agent", maxDuration="1ms").json()
    assert body["data"] == []
    for bad in ({"tags": "{"}, {"minDuration": "soon"}, {"nope": "1"}):
        r = get(world, "/api/traces", **bad)
        assert r.status_code == 400 and "error" in r.json()


def test_jaeger_trace_by_id_is_the_default_of_the_shared_route(world: World) -> None:
    tid, sent = next((t, s) for t, s in traces_of(world).items() if len(s) == 3)
    for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        body = get(world, f"/api/traces/{tid}", headers=accept).json()
        (trace,) = body["data"]
        _check_jaeger_trace(trace, sent)


def test_jaeger_dependencies_count_cross_service_calls(world: World) -> None:
    body = get(world, "/api/dependencies", lookback=3_600_000).json()
    tool_calls = sum(1 for s in world.manifest.spans if s.service == "tools")
    assert body["data"] == [{"parent": "agent", "child": "tools", "callCount": tool_calls}]


# -- auth --------------------------------------------------------------------------------------


def test_query_tokens_work_as_bearer_and_as_grafanas_basic_auth_password(
    start_collector: Any, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    query = create_token(tokens, "alpha", "query")
    other = create_token(tokens, "beta", "query")
    ingest = {p: create_token(tokens, p, "ingest") for p in ("alpha", "beta")}
    rc = start_collector(**{"auth.enabled": True, "auth.tokens_file": str(tokens)})
    for project, token in ingest.items():
        p = pipeline("http", rc.http_url, rc.grpc_endpoint, {"service.name": f"svc-{project}"},
                     headers={"authorization": f"Bearer {token}"})  # fmt: skip
        p.tracer().start_span("op", attributes={"room": "r1"}).end()
        p.shutdown()
    url = rc.api_url
    basic = "Basic " + base64.b64encode(f"grafana:{query}".encode()).decode()
    for path in ("/api/echo", "/api/search", "/api/services", "/api/v2/search/tags"):
        assert httpx.get(url + path, timeout=30).status_code == 401
        assert (
            httpx.get(url + path, headers={"Authorization": f"Bearer {query}"}).status_code == 200
        )
        assert httpx.get(url + path, headers={"Authorization": basic}).status_code == 200
    bad = "Basic " + base64.b64encode(b"grafana:nope").decode()
    assert httpx.get(url + "/api/search", headers={"Authorization": bad}).status_code == 401
    services = httpx.get(url + "/api/services", headers={"Authorization": basic}).json()["data"]
    assert services == ["svc-alpha"]
    found = httpx.get(url + "/api/search", headers={"Authorization": f"Bearer {other}"}).json()
    assert Counter(t["rootServiceName"] for t in found["traces"]) == {"svc-beta": 1}
