"""A queued batch → the OTLP export request the forwarder sends.

A batch (collector.store.OutboxBatch) holds its records as they were committed, in the
decoders' layout (``collector.store.ARROW_SCHEMAS``: spans and log records refer to their
resource by id, span attributes are a keyset id and a list of values), with the resources and
keysets they refer to. Here they become SPEC 4 rows and then one request through
collector.otlp_build, in their committed order. Each resource gets the record's ``project``,
``room`` and ``session`` (the inferred ones included) under the first key of
``tagging.project_keys``, ``room_keys`` and ``session_keys``, so that an upstream (or another
roomscope) sees the tags this collector gave.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from .otlp_build import SIGNAL_OF, RequestBuilder, Row, plain_rows
from .span_wire import encode_spans
from .store import decode_batch
from .tagging import Tagger

# _TaggedBuilder adds no tags of its own: the rows carry them (see build_with_messages).
_NO_TAGGER = Tagger(project_keys=(), room_keys=(), session_keys=(), default_project="")
_TABLE_OF = {"span_data": "spans", "log_data": "logs", "metric_points": "metric_points"}


def _resources(tables: Mapping[str, pa.Table]) -> dict[int, tuple]:
    table = tables.get("resources")
    listed = table.to_pylist() if table is not None else []
    return {r["resource_id"]: tuple(r["attributes"] or ()) for r in listed}


def _keysets(tables: Mapping[str, pa.Table]) -> dict[int, list[str]]:
    table = tables.get("attribute_keysets")
    listed = table.to_pylist() if table is not None else []
    return {k["keyset_id"]: k["keys"] or [] for k in listed}


def batch_rows(tables: Mapping[str, pa.Table]) -> tuple[str, list[dict[str, Any]]]:
    """(SPEC 4 table, its rows) of a batch: attributes and resource attributes as pairs."""
    stored = next(name for name in tables if name in _TABLE_OF)
    rows = plain_rows(tables[stored])
    resources = _resources(tables)
    if stored == "span_data":
        keysets = _keysets(tables)
        for row in rows:
            keys = keysets.get(row.pop("attribute_keyset"), [])
            row["attributes"] = list(zip(keys, row.pop("attribute_values") or (), strict=False))
    if stored != "metric_points":
        for row in rows:
            row["resource_attributes"] = resources.get(row.pop("resource_id"), ())
    return _TABLE_OF[stored], rows


class _TaggedBuilder(RequestBuilder):
    """Tags go into the resource attributes before grouping (see :func:`build_forward`)."""

    def _tag_pairs(self, row: Row, resource: dict[str, str | None]) -> tuple:
        return ()


def build_forward(tables: Mapping[str, pa.Table], tagger: Tagger) -> tuple[str, bytes, int]:
    """(signal, serialized export request, records) of a queued batch. Spans are written as
    wire format directly (collector.span_wire); logs and metric points through otlp_build."""
    if not tables:
        raise ValueError("its bytes are missing from the queue's files (<store>.forward/)")
    keys = (tagger.project_keys[0], tagger.room_keys[0], tagger.session_keys[0])
    spans = tables.get("span_data")
    if spans is not None:
        body = encode_spans(spans, _resources(tables), _keysets(tables), keys)
        return "traces", body, spans.num_rows
    return build_with_messages(tables, keys)


def build_payload(payload: bytes | None, keys: tuple[str, str, str]) -> tuple[str, bytes, int]:
    """build_forward of a queued batch's payload (collector.store.OutboxBatch), with the tag
    keys: what the forwarder's build process runs (picklable arguments and result)."""
    if payload is None:
        raise ValueError("its bytes are missing from the queue's files (<store>.forward/)")
    tagger = Tagger(project_keys=keys[:1], room_keys=keys[1:2], session_keys=keys[2:],
                    default_project="")  # fmt: skip
    return build_forward(decode_batch(payload), tagger)


def build_with_messages(
    tables: Mapping[str, pa.Table], keys: tuple[str, str, str]
) -> tuple[str, bytes, int]:
    """build_forward through otlp_build's messages (logs, metric points; spans in tests)."""
    table, rows = batch_rows(tables)
    builder = _TaggedBuilder(table, _NO_TAGGER)
    for row in rows:
        tags = (row.get("project"), row.get("room"), row.get("session_id"))
        pairs = tuple(p for p in row.get("resource_attributes") or () if p[0] not in keys)
        row["resource_attributes"] = pairs + tuple(
            (key, value) for key, value in zip(keys, tags, strict=True) if value
        )
        builder.add(row)
    return SIGNAL_OF[table], builder.request.SerializeToString(), builder.records
