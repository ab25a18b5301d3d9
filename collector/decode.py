"""The one decode path: an OTLP body (protobuf or OTLP JSON) or a gRPC message → a Decoded batch.

OTLP JSON differs from the protobuf JSON mapping only in its ids (hex, not base64); they are
rewritten, then ``json_format`` builds the same message the protobuf path parses, so every
record goes through the same flattener whatever its transport or encoding.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from . import fast_spans
from .columns import Decoded
from .errors import DecodeError
from .flatten_logs import flatten_logs
from .flatten_metrics import flatten_metrics
from .flatten_spans import flatten_spans
from .tagging import Tagger

# signal name (the URL path's last part) → (request type, response type, flattener, table)
SIGNALS: dict[str, tuple[type[Message], type[Message], Callable[..., Decoded], str]] = {
    "traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, flatten_spans, "spans"),
    "logs": (ExportLogsServiceRequest, ExportLogsServiceResponse, flatten_logs, "logs"),
    "metrics": (
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
        flatten_metrics,
        "metric_points",
    ),
}

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_to_b64(obj: dict[str, Any], where: str) -> None:
    for key in _ID_KEYS:
        value = obj.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise DecodeError(f"{where}.{key} must be a hex string")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) * 2 != len(value):  # also refuses the spaces fromhex() would skip
            raise DecodeError(f"{where}.{key} is not hex: {value[:40]!r}")
        obj[key] = base64.b64encode(raw).decode("ascii")


def _items(obj: Any, *keys: str) -> list[Any]:
    """obj[key] for the first key present (lowerCamelCase or snake_case), as a list of dicts."""
    if not isinstance(obj, dict):
        raise DecodeError("expected a JSON object")
    for key in keys:
        value = obj.get(key)
        if value is not None:
            if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
                raise DecodeError(f"{key} must be a list of objects")
            return value
    return []


def _rewrite_ids(signal: str, doc: Any) -> None:
    """Turn OTLP JSON's hex ids into the base64 the protobuf JSON mapping expects, in place."""
    if signal == "traces":
        for rs in _items(doc, "resourceSpans", "resource_spans"):
            for ss in _items(rs, "scopeSpans", "scope_spans"):
                for sp in _items(ss, "spans"):
                    _hex_to_b64(sp, "span")
                    for link in _items(sp, "links"):
                        _hex_to_b64(link, "span.link")
    elif signal == "logs":
        for rl in _items(doc, "resourceLogs", "resource_logs"):
            for sl in _items(rl, "scopeLogs", "scope_logs"):
                for lr in _items(sl, "logRecords", "log_records"):
                    _hex_to_b64(lr, "logRecord")
    else:
        for rm in _items(doc, "resourceMetrics", "resource_metrics"):
            for sm in _items(rm, "scopeMetrics", "scope_metrics"):
                for metric in _items(sm, "metrics"):
                    for data in metric.values():
                        if isinstance(data, dict):
                            for dp in _items(data, "dataPoints", "data_points"):
                                for ex in _items(dp, "exemplars"):
                                    _hex_to_b64(ex, "exemplar")


def parse_protobuf(signal: str, body: bytes) -> Message:
    request_type = SIGNALS[signal][0]
    try:
        return request_type.FromString(body)
    except (ProtobufDecodeError, RecursionError, ValueError) as exc:
        raise DecodeError(f"invalid protobuf {request_type.__name__}: {exc}") from None


def parse_json(signal: str, body: bytes) -> Message:
    request_type = SIGNALS[signal][0]
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    _rewrite_ids(signal, doc)
    try:
        return json_format.ParseDict(doc, request_type(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise DecodeError(f"invalid OTLP JSON {request_type.__name__}: {exc}") from None
    except SystemError:  # upb, on a field name that is not valid Unicode (a lone surrogate)
        raise DecodeError(
            f"invalid OTLP JSON {request_type.__name__}: a name is not valid Unicode"
        ) from None


def flatten(
    signal: str, request: Message, tagger: Tagger, received_ns: int | None = None
) -> Decoded:
    """A parsed Export*ServiceRequest → its Arrow batch (the single flattening entry point)."""
    flattener = SIGNALS[signal][2]
    try:
        return flattener(request, tagger, received_ns or time.time_ns())
    except RecursionError:
        raise DecodeError("attribute values nested too deeply") from None


def fast_path(signal: str, encoding: str, fast: bool = True) -> bool:
    """Whether decode_body takes the C decoder for such a body (~4 ms per 256 KiB of spans on
    this project's 2-core benchmark machine; the Python decoders take 4-30x as long)."""
    return fast and fast_spans.AVAILABLE and signal == "traces" and encoding != "json"


def decode_body(
    signal: str, body: bytes, encoding: str, tagger: Tagger, fast: bool = True
) -> Decoded:
    """A body (HTTP, or a gRPC request's bytes) → Decoded; ``encoding`` is ``"protobuf"`` or
    ``"json"``. Protobuf trace bodies take the C decoder (collector._otlpfast) when it is built
    and ``fast`` (setting ingest.fast_decode) is on; it builds the very same table."""
    if encoding == "json":
        return flatten(signal, parse_json(signal, body), tagger)
    try:
        if fast_path(signal, encoding, fast):
            return fast_spans.flatten_spans_bytes(body, tagger, time.time_ns())
        request = parse_protobuf(signal, body)
    except DecodeError as exc:
        raise _named_utf8(signal, body, exc) from None
    return flatten(signal, request, tagger)


# Wire fields bad_utf8_field reads at most (~1 µs each): naming the field costs a refused body
# no more than ~20 ms, on the event loop or in a decode thread.
WALK_FIELDS = 20_000


def _named_utf8(signal: str, body: bytes, exc: DecodeError) -> DecodeError:
    """A protobuf refusal that is about a string's bytes, said so: "invalid UTF-8 in a string
    field (where)". protobuf says "String field had bad UTF-8" (some releases just "Wire
    format was corrupt"), without naming the field; other refusals are returned as they are."""
    text = str(exc)
    said = "UTF-8" in text
    if not said and "Wire format was corrupt" not in text:
        return exc
    request_type = SIGNALS[signal][0]
    where = bad_utf8_field(request_type.DESCRIPTOR, body, [WALK_FIELDS])
    if where is None and not said:
        return exc
    return DecodeError(
        f"invalid protobuf {request_type.__name__}: invalid UTF-8 in a string field"
        + (f" ({where})" if where else "")
        + "; protobuf strings must be UTF-8 (send binary data as bytes_value)"
    )


def bad_utf8_field(
    descriptor: Descriptor, body: bytes, budget: list[int], depth: int = 0
) -> str | None:
    """The path (``resource_spans[0].scope_spans[0].spans[0].name``) of the first string
    field in ``body`` whose bytes are not UTF-8, or None: none, the wire format itself is
    broken there, or more than ``budget[0]`` fields would have to be read (it counts down), or
    messages nest deeper than protobuf's limit of 100."""
    pos, end, seen = 0, len(body), dict[int, int]()
    try:
        while pos < end:
            budget[0] -= 1
            if budget[0] < 0:
                return None
            tag, pos = _varint(body, pos)
            number, wire_type = tag >> 3, tag & 7
            if wire_type == 0:
                pos = _varint(body, pos)[1]
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                size, pos = _varint(body, pos)
                data, pos = body[pos : pos + size], pos + size
                field = descriptor.fields_by_number.get(number)
                if field is None or pos > end:
                    continue
                index = seen[number] = seen.get(number, -1) + 1
                name = field.name + (f"[{index}]" if _repeated(field) else "")
                if field.type == FieldDescriptor.TYPE_STRING and not _utf8(data):
                    return name
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    if depth >= 100:
                        return None
                    inner = bad_utf8_field(field.message_type, data, budget, depth + 1)
                    if inner is not None:
                        return f"{name}.{inner}"
            else:  # groups: not in OTLP
                return None
    except IndexError:  # a varint past the end
        return None
    return None


def _repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf 6+; ``label`` before (gone in 7)
    return bool(repeated) if repeated is not None else field.label == field.LABEL_REPEATED


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")  # strict, as protobuf's check: no surrogates, no overlong forms
    except UnicodeDecodeError:
        return False
    return True


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def response_message(signal: str, decoded: Decoded) -> Message:
    """The Export*ServiceResponse for a decoded request (partial_success for rejected records)."""
    response = SIGNALS[signal][1]()
    if decoded.rejected:
        ps = response.partial_success
        field = {
            "traces": "rejected_spans",
            "logs": "rejected_log_records",
            "metrics": "rejected_data_points",
        }[signal]
        setattr(ps, field, decoded.rejected)
        ps.error_message = decoded.error_message
    return response


def encode_message(message: Message, encoding: str) -> bytes:
    if encoding == "json":
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()
