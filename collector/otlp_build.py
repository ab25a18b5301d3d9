"""Stored records → OTLP export requests: the reverse of the flatteners.

Rows come as dicts with the columns of SPEC 4's ``spans``, ``logs`` and ``metric_points``
(timestamps as integer nanoseconds, maps as lists of ``(key, value)`` pairs, as Arrow's
``to_pylist`` gives them). Session export (query.library.otlp_export) and the import of
parquet files (collector.otlp_files) build their requests here.

Attribute values are stored as text (collector.attributes): a value goes out as an int,
double, bool, array or map when the text is exactly what that value is stored as, else as a
string, so importing an export stores the same text again. Each record's ``project``,
``room`` and ``session_id`` go out as resource attributes (the first key of each
``tagging.*_keys``) where the resource's own attributes would not tag it so: an inferred
session, or a project that an ingest token forced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .attributes import body_text, value_text
from .flatten_metrics import TEMPORALITY
from .flatten_spans import KINDS, STATUS
from .tagging import Tagger

Row = Mapping[str, Any]
Pairs = Sequence[tuple[str, str | None]]

# table → the signal of its export request
SIGNAL_OF = {"spans": "traces", "logs": "logs", "metric_points": "metrics"}
_TEMPORALITY_CODE = {name: code for code, name in TEMPORALITY.items()}
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _native_value(v: Any, out: AnyValue) -> None:
    """A JSON value (what collector.attributes.native made) into an AnyValue."""
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int) and _INT64[0] <= v <= _INT64[1]:
        out.int_value = v
    elif isinstance(v, float):
        out.double_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, list):
        out.array_value.SetInParent()
        for x in v:
            _native_value(x, out.array_value.values.add())
    elif isinstance(v, dict):
        out.kvlist_value.SetInParent()
        for k, x in v.items():
            kv = out.kvlist_value.values.add(key=k)
            _native_value(x, kv.value)
    elif v is not None:
        out.string_value = str(v)


def any_value(text: str | None, out: AnyValue) -> None:
    """Stored attribute text → the AnyValue that is stored as exactly this text."""
    if text is None:
        return
    candidate = AnyValue()
    first = text[:1]
    try:
        if text in ("true", "false"):
            candidate.bool_value = text == "true"
        elif first in ("[", "{"):
            _native_value(json.loads(text), candidate)
        elif first.isdigit() or first in ("-", "N", "I"):
            number = float(text) if any(c in text for c in ".eEnN") else int(text)
            _native_value(number, candidate)
    except (ValueError, RecursionError):
        candidate.Clear()
    if candidate.WhichOneof("value") is not None and value_text(candidate) == text:
        out.CopyFrom(candidate)
    else:
        out.string_value = text


def _body(text: str | None, out: AnyValue) -> None:
    if text is None:
        return
    if text[:1] in ("[", "{"):
        candidate = AnyValue()
        try:
            _native_value(json.loads(text), candidate)
        except (ValueError, RecursionError):
            candidate.Clear()
        if candidate.WhichOneof("value") is not None and body_text(candidate) == text:
            out.CopyFrom(candidate)
            return
    out.string_value = text


# Attribute texts repeat (a model name, a status, a tool): each is typed once per builder.
_MAX_CACHED = 4096


def key_values(
    pairs: Iterable[tuple[str, str | None]] | None, out: Any, cache: dict | None = None
) -> None:
    for key, text in pairs or ():
        kv: KeyValue = out.add(key=key)
        if text is None:
            continue
        if cache is None:
            any_value(text, kv.value)
            continue
        value = cache.get(text)
        if value is None:
            value = AnyValue()
            any_value(text, value)
            if len(cache) < _MAX_CACHED:
                cache[text] = value
        kv.value.CopyFrom(value)


def _id(hex_id: str | None) -> bytes:
    return bytes.fromhex(hex_id) if hex_id else b""


def _code(names: Sequence[str], text: str | None) -> int:
    if not text:
        return 0
    return names.index(text) if text in names else int(text)


class RequestBuilder:
    """Groups rows of one table by resource (with the tag attributes each needs) and scope
    into one export request, in the rows' order within each group."""

    def __init__(self, table: str, tagger: Tagger):
        self.table = table
        self.tagger = tagger
        self.request: Message = {
            "spans": ExportTraceServiceRequest,
            "logs": ExportLogsServiceRequest,
            "metric_points": ExportMetricsServiceRequest,
        }[table]()
        self._resources: dict[Any, Any] = {}
        self._scopes: dict[Any, Any] = {}
        self._metrics: dict[Any, Any] = {}
        self._values: dict[str, AnyValue] = {}  # attribute text → its typed value
        self.records = 0

    @property
    def signal(self) -> str:
        return SIGNAL_OF[self.table]

    def _tag_pairs(self, row: Row, resource: dict[str, str | None]) -> tuple:
        """Resource attributes to add so the import tags this record as it is stored."""
        t = self.tagger
        own = dict(row.get("attributes") or ())
        tags = t.resource_tags(resource)
        if t.all_keys.intersection(own):
            tags = t.record_tags(own, tags)
        extra = []
        if row.get("project") and tags.project != row["project"]:
            extra.append((t.project_keys[0], row["project"]))
        if row.get("room") and tags.room != row["room"]:
            extra.append((t.room_keys[0], row["room"]))
        if row.get("session_id") and tags.session != row["session_id"]:
            extra.append((t.session_keys[0], row["session_id"]))
        return tuple(extra)

    def _scope_container(self, row: Row) -> Any:
        pairs = tuple(row.get("resource_attributes") or ())
        extra = self._tag_pairs(row, dict(pairs))
        rkey = (pairs, extra)
        resource = self._resources.get(rkey)
        if resource is None:
            resource = getattr(self.request, f"resource_{self.signal_items}").add()
            key_values(pairs + extra, resource.resource.attributes)
            self._resources[rkey] = resource
        scope_attrs = row.get("scope_attributes")
        skey = (rkey, row.get("scope_name"), row.get("scope_version"), scope_attrs)
        scope = self._scopes.get(skey)
        if scope is None:
            scope = getattr(resource, f"scope_{self.signal_items}").add()
            scope.scope.name = row.get("scope_name") or ""
            scope.scope.version = row.get("scope_version") or ""
            if scope_attrs:
                key_values(json.loads(scope_attrs).items(), scope.scope.attributes)
            self._scopes[skey] = scope
        return scope

    @property
    def signal_items(self) -> str:
        return {"spans": "spans", "logs": "logs", "metric_points": "metrics"}[self.table]

    def add(self, row: Row) -> None:
        scope = self._scope_container(row)
        self.records += 1
        if self.table == "spans":
            _span(row, scope.spans.add(), self._values)
        elif self.table == "logs":
            _log(row, scope.log_records.add(), self._values)
        else:
            self._point(row, scope)

    def _point(self, row: Row, scope: Any) -> None:
        kind = row["type"]
        mkey = (
            id(scope),
            row["name"],
            row.get("description"),
            row.get("unit"),
            kind,
            row.get("temporality"),
            row.get("is_monotonic"),
        )
        metric = self._metrics.get(mkey)
        if metric is None:
            metric = scope.metrics.add(
                name=row["name"],
                description=row.get("description") or "",
                unit=row.get("unit") or "",
            )
            data = getattr(metric, kind)
            data.SetInParent()
            if kind != "gauge" and kind != "summary":
                data.aggregation_temporality = _TEMPORALITY_CODE.get(row.get("temporality"), 0)
            if kind == "sum":
                data.is_monotonic = bool(row.get("is_monotonic"))
            self._metrics[mkey] = metric
        _data_point(kind, row, getattr(metric, kind).data_points.add(), self._values)


def _span(row: Row, sp: Any, cache: dict) -> None:
    sp.trace_id = _id(row["trace_id"])
    sp.span_id = _id(row["span_id"])
    sp.parent_span_id = _id(row.get("parent_span_id"))
    sp.trace_state = row.get("trace_state") or ""
    sp.name = row.get("name") or ""
    sp.kind = _code(KINDS, row.get("kind"))
    sp.start_time_unix_nano = row["start_time"]
    sp.end_time_unix_nano = row["start_time"] + row["duration_ns"]
    key_values(row.get("attributes"), sp.attributes, cache)
    for ev in row.get("events") or ():
        event = sp.events.add(
            time_unix_nano=ev["time"] or 0,
            name=ev["name"] or "",
            dropped_attributes_count=ev["dropped_attributes_count"] or 0,
        )
        key_values(ev["attributes"], event.attributes, cache)
    for ln in row.get("links") or ():
        link = sp.links.add(
            trace_id=_id(ln["trace_id"]),
            span_id=_id(ln["span_id"]),
            trace_state=ln["trace_state"] or "",
            dropped_attributes_count=ln["dropped_attributes_count"] or 0,
            flags=ln["flags"] or 0,
        )
        key_values(ln["attributes"], link.attributes, cache)
    sp.status.code = _code(STATUS, row.get("status_code"))
    sp.status.message = row.get("status_message") or ""
    sp.flags = row.get("flags") or 0
    sp.dropped_attributes_count = row.get("dropped_attributes_count") or 0
    sp.dropped_events_count = row.get("dropped_events_count") or 0
    sp.dropped_links_count = row.get("dropped_links_count") or 0


def _log(row: Row, lr: Any, cache: dict) -> None:
    lr.time_unix_nano = row.get("time") or 0
    lr.observed_time_unix_nano = row.get("observed_time") or 0
    lr.severity_number = row.get("severity_number") or 0
    lr.severity_text = row.get("severity_text") or ""
    _body(row.get("body"), lr.body)
    if row.get("body") is None:
        lr.ClearField("body")
    key_values(row.get("attributes"), lr.attributes, cache)
    lr.trace_id = _id(row.get("trace_id"))
    lr.span_id = _id(row.get("span_id"))
    lr.flags = row.get("flags") or 0
    lr.event_name = row.get("event_name") or ""
    lr.dropped_attributes_count = row.get("dropped_attributes_count") or 0


def _data_point(kind: str, row: Row, dp: Any, cache: dict) -> None:
    dp.time_unix_nano = row.get("time") or 0
    dp.start_time_unix_nano = row.get("start_time") or 0
    key_values(row.get("attributes"), dp.attributes, cache)
    if kind != "summary":
        dp.flags = row.get("flags") or 0
        for ex in row.get("exemplars") or ():
            exemplar = dp.exemplars.add(
                time_unix_nano=ex["time"] or 0,
                as_double=ex["value"] if ex["value"] is not None else 0.0,
                trace_id=_id(ex["trace_id"]),
                span_id=_id(ex["span_id"]),
            )
            key_values(ex["filtered_attributes"], exemplar.filtered_attributes, cache)
    else:
        dp.flags = row.get("flags") or 0
    if kind in ("gauge", "sum"):
        if row.get("value") is not None:
            dp.as_double = row["value"]
        return
    dp.count = row.get("count") or 0
    if kind == "summary":
        dp.sum = row.get("sum") or 0.0
        for q in row.get("quantiles") or ():
            dp.quantile_values.add(quantile=q["quantile"], value=q["value"])
        return
    for name in ("sum", "min", "max"):
        if row.get(name) is not None:
            setattr(dp, name, row[name])
    if kind == "histogram":
        dp.bucket_counts.extend(row.get("bucket_counts") or ())
        dp.explicit_bounds.extend(row.get("explicit_bounds") or ())
        return
    dp.scale = row.get("scale") or 0
    dp.zero_count = row.get("zero_count") or 0
    dp.zero_threshold = row.get("zero_threshold") or 0.0
    dp.positive.offset = row.get("positive_offset") or 0
    dp.positive.bucket_counts.extend(row.get("positive_bucket_counts") or ())
    dp.negative.offset = row.get("negative_offset") or 0
    dp.negative.bucket_counts.extend(row.get("negative_bucket_counts") or ())


def build_request(table: str, rows: Iterable[Row], tagger: Tagger) -> RequestBuilder:
    """One export request holding ``rows`` (of SPEC 4's ``table``)."""
    builder = RequestBuilder(table, tagger)
    for row in rows:
        builder.add(row)
    return builder


def _plain_type(t: Any) -> Any:
    """``t`` with every timestamp as int64 nanoseconds (to_pylist then gives integers)."""
    if pa.types.is_timestamp(t):
        return pa.int64()
    if pa.types.is_list(t):
        return pa.list_(_plain_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain_type(f.type)) for f in t])
    return t


def plain_rows(batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """A batch of SPEC 4 rows as dicts, timestamps as integer nanoseconds."""
    schema = pa.schema([pa.field(f.name, _plain_type(f.type)) for f in batch.schema])
    return batch.cast(schema).to_pylist()
