"""ExportMetricsServiceRequest → an Arrow table of the ``metric_points`` table.

One row per data point, of every type: gauge, sum, histogram, exponential histogram, summary.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .attributes import attr_dict
from .columns import MAX_TS, Decoded, MapColumn, id_hex
from .store import ARROW_SCHEMAS
from .tagging import Tagger

SCHEMA = ARROW_SCHEMAS["metric_points"]
TEMPORALITY = {1: "delta", 2: "cumulative"}
_MAPS = ("attributes", "resource_attributes")


def _exemplars(dp) -> list[dict[str, Any]]:
    out = []
    for ex in dp.exemplars:
        w = ex.WhichOneof("value")
        value = float(ex.as_int) if w == "as_int" else ex.as_double
        if ex.time_unix_nano > MAX_TS:
            raise ValueError("exemplar timestamp is beyond the year 2262")
        out.append(
            {
                "time": ex.time_unix_nano or None,
                "value": value,
                "trace_id": id_hex(ex.trace_id, 16, "exemplar trace_id", False),
                "span_id": id_hex(ex.span_id, 8, "exemplar span_id", False),
                "filtered_attributes": list(attr_dict(ex.filtered_attributes).items()),
            }
        )
    return out


def _point_fields(kind: str, dp) -> dict[str, Any]:
    """The type-specific columns of one data point."""
    if kind in ("gauge", "sum"):
        w = dp.WhichOneof("value")
        return {"value": float(dp.as_int) if w == "as_int" else dp.as_double if w else None}
    row: dict[str, Any] = {"count": dp.count}
    if kind == "summary":
        row["sum"] = dp.sum
        row["quantiles"] = [{"quantile": q.quantile, "value": q.value} for q in dp.quantile_values]
        return row
    row["sum"] = dp.sum if dp.HasField("sum") else None
    row["min"] = dp.min if dp.HasField("min") else None
    row["max"] = dp.max if dp.HasField("max") else None
    if kind == "histogram":
        row["bucket_counts"] = list(dp.bucket_counts)
        row["explicit_bounds"] = list(dp.explicit_bounds)
    else:  # exponential_histogram
        row["scale"] = dp.scale
        row["zero_count"] = dp.zero_count
        row["zero_threshold"] = dp.zero_threshold
        row["positive_offset"] = dp.positive.offset
        row["positive_bucket_counts"] = list(dp.positive.bucket_counts)
        row["negative_offset"] = dp.negative.offset
        row["negative_bucket_counts"] = list(dp.negative.bucket_counts)
    return row


def flatten_metrics(req, tagger: Tagger, received_ns: int) -> Decoded:
    tag_keys = tagger.all_keys
    rows: list[dict[str, Any]] = []
    maps = {name: MapColumn() for name in _MAPS}
    out = Decoded("metric_points", pa.table({}))
    for rm in req.resource_metrics:
        rattrs = attr_dict(rm.resource.attributes)
        rtags = tagger.resource_tags(rattrs)
        service = rattrs.get("service.name")
        for sm in rm.scope_metrics:
            scope = sm.scope
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    out.reject(f"metric {metric.name!r}: no data")
                    continue
                data = getattr(metric, kind)
                temporality = TEMPORALITY.get(getattr(data, "aggregation_temporality", 0))
                monotonic = data.is_monotonic if kind == "sum" else None
                for dp in data.data_points:
                    try:
                        t = dp.time_unix_nano or received_ns
                        start = dp.start_time_unix_nano or None
                        if t > MAX_TS or (start or 0) > MAX_TS:
                            raise ValueError("timestamp is beyond the year 2262")
                        own = attr_dict(dp.attributes)
                        row = _point_fields(kind, dp)
                        # SummaryDataPoint has no exemplars field
                        has_ex = kind != "summary" and dp.exemplars
                        row["exemplars"] = _exemplars(dp) if has_ex else []
                    except ValueError as exc:
                        out.reject(f"metric {metric.name!r}: {exc}")
                        continue
                    tags = tagger.record_tags(own, rtags) if tag_keys.intersection(own) else rtags
                    row.update(
                        project=tags.project,
                        room=tags.room,
                        session_id=tags.session,
                        name=metric.name,
                        description=metric.description or None,
                        unit=metric.unit or None,
                        type=kind,
                        temporality=temporality,
                        is_monotonic=monotonic,
                        start_time=start,
                        time=t,
                        flags=dp.flags,
                        service_name=service,
                        scope_name=scope.name or None,
                        scope_version=scope.version or None,
                        received_at=received_ns,
                    )
                    maps["attributes"].add_dict(own)
                    maps["resource_attributes"].add_dict(rattrs)
                    rows.append(row)
    arrays = []
    for f in SCHEMA:
        if f.name in maps:
            arrays.append(maps[f.name].array())
        else:
            arrays.append(pa.array([r.get(f.name) for r in rows], f.type))
    out.table = pa.Table.from_arrays(arrays, schema=SCHEMA)
    return out
