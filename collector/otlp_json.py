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


def _hex_ids(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def to_otlp_json(request: Message) -> bytes:
    """One request as one line of OTLP/JSON (no newline)."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)
    _hex_ids(doc)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
