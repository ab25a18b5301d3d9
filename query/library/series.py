"""Metric points → time series for charts: gauges and sums as values (delta sums also as a rate
per second of their interval), histograms as count/p50/p99 per point (cumulative histograms
turned into per-interval deltas first).
Non-finite values are written as the strings "NaN", "Infinity", "-Infinity" (SPEC 8)."""

from __future__ import annotations

from typing import Any

import duckdb

from .filters import MetricFilter
from .records import format_ts, jsonable
from .search import metric_where, where_sql

Record = dict[str, Any]
MAX_POINTS = 20_000


def quantile(q: float, counts: list[int], bounds: list[float], lo: Any, hi: Any) -> float | None:
    """The q-quantile of an explicit-bucket histogram, interpolated linearly inside its bucket."""
    total = sum(counts)
    if total <= 0 or len(counts) != len(bounds) + 1:
        return None
    rank, seen = q * total, 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            lower = bounds[i - 1] if i > 0 else (lo if lo is not None else min(0.0, bounds[0]))
            upper = bounds[i] if i < len(bounds) else (hi if hi is not None else bounds[-1])
            if lo is not None:
                lower = max(lower, lo)
            if hi is not None:
                upper = min(upper, hi)
            return float(lower + (upper - lower) * (rank - seen) / c)
        seen += c
    return None


def _histogram_point(row: Record, prev: Record | None) -> Record:
    counts = [int(c) for c in row["bucket_counts"] or []]
    count, total = row["count"], row["sum"]
    if prev is not None and row["temporality"] == "cumulative" and prev["start"] == row["start"]:
        before = [int(c) for c in prev["bucket_counts"] or []]
        if len(before) == len(counts):
            counts = [a - b for a, b in zip(counts, before, strict=True)]
            count = (count or 0) - (prev["count"] or 0)
            total = None if total is None or prev["sum"] is None else total - prev["sum"]
    bounds = [float(b) for b in row["explicit_bounds"] or []]
    lo, hi = row["min"], row["max"]
    return {
        "time": format_ts(row["time"]),
        "count": count,
        "sum": total,
        "p50": quantile(0.5, counts, bounds, lo, hi),
        "p99": quantile(0.99, counts, bounds, lo, hi),
    }


def _per_second(row: Record) -> float | None:
    """A delta sum's value per second of its interval (start to time), or None without one."""
    start, end, value = row["start"], row["time"], row["value"]
    if not start or end is None or end <= start or value is None:
        return None
    return float(value) / ((end - start) / 1e9)


def metric_series(con: duckdb.DuckDBPyConnection, session_id: str, f: MetricFilter) -> list[Record]:
    """One series per (name, service, attributes), points in time order."""
    conds, params = metric_where(f)
    sql = (
        "SELECT name, type, unit, temporality, service_name, epoch_ns(start_time) AS start,"
        " epoch_ns(time) AS time, value, count, sum, min, max, bucket_counts, explicit_bounds,"
        " quantiles, attributes FROM metric_points"
        f"{where_sql(['session_id = ?', *conds])}"
        " ORDER BY name, service_name, time LIMIT ?"
    )
    cur = con.execute(sql, [session_id, *params, f.limit or MAX_POINTS])
    names = [d[0] for d in cur.description]
    series: dict[tuple[Any, ...], Record] = {}
    last: dict[tuple[Any, ...], Record] = {}
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        attrs = jsonable(row["attributes"]) or {}
        key = (row["name"], row["service_name"], tuple(sorted(attrs.items())))
        s = series.setdefault(
            key,
            {
                "name": row["name"],
                "type": row["type"],
                "unit": row["unit"],
                "temporality": row["temporality"],
                "service_name": row["service_name"],
                "attributes": attrs,
                "points": [],
            },
        )
        if row["type"] == "histogram":
            point = _histogram_point(row, last.get(key))
        elif row["type"] == "exponential_histogram":
            point = {"time": format_ts(row["time"]), "count": row["count"], "sum": row["sum"]}
            point.update(p50=None, p99=None)
        elif row["type"] == "summary":
            qs = {float(q["quantile"]): q["value"] for q in jsonable(row["quantiles"]) or []}
            point = {"time": format_ts(row["time"]), "count": row["count"], "sum": row["sum"]}
            point.update(p50=qs.get(0.5), p99=qs.get(0.99))
        else:
            point = {"time": format_ts(row["time"]), "value": row["value"]}
            if row["type"] == "sum" and row["temporality"] == "delta":
                point["rate"] = _per_second(row)
        last[key] = row
        # Values are data: NaN and ±Infinity as "NaN", "Infinity", "-Infinity" (SPEC 8).
        s["points"].append({k: jsonable(v, data=True) for k, v in point.items()})
    return list(series.values())
