"""Export requests → OTLP/JSON as the OpenTelemetry Collector writes it (its file exporter):
lowerCamelCase names, enums as integers, 64-bit integers as strings, and trace and span ids
in hex, where protobuf's own JSON mapping has base64 (collector.decode reads them back)."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex(obj: dict[str, Any]) -> None:
    for key in _ID_KEYS.intersection(obj):
        obj[key] = base64.b64decode(obj[key]).hex()


def _hex_ids(doc: dict[str, Any]) -> None:
    """The ids of spans, links, log records and exemplars, in place (the places
    collector.decode reads them from)."""
    for rs in doc.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                _hex(span)
                for link in span.get("links", ()):
                    _hex(link)
    for rl in doc.get("resourceLogs", ()):
        for sl in rl.get("scopeLogs", ()):
            for record in sl.get("logRecords", ()):
                _hex(record)
    for rm in doc.get("resourceMetrics", ()):
        for sm in rm.get("scopeMetrics", ()):
            for metric in sm.get("metrics", ()):
                for data in metric.values():
                    if isinstance(data, dict):
                        for point in data.get("dataPoints", ()):
                            for exemplar in point.get("exemplars", ()):
                                _hex(exemplar)


def to_otlp_json(request: Message) -> bytes:
    """One request as one line of OTLP/JSON (no newline)."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)
    _hex_ids(doc)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
