"""Agent usage (SPEC 11): LLM calls, tokens, cost and tool calls per model, provider, room,
session, service or tool, computed at query time from spans and metric points
(:mod:`query.library.usage_sql` says what is read and how).

Cost comes from the ``usage.prices`` setting (USD per million tokens per model): cached input
tokens at ``cached_input`` (else the input price), the rest of the input at ``input``, output at
``output``. A model without a price, or a call without a model, makes its row's cost null and
counts as unpriced; it is never priced at 0.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from .errors import QueryError
from .filters import Filter
from .sessions import session_window
from .usage_sql import KEYS, usage_sql

BY = tuple(KEYS)
Record = dict[str, Any]


@dataclass(frozen=True)
class Price:
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens
    cached_input: float | None = None  # USD per million cached input tokens (None: input)


Prices = Mapping[str, Price]
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def parse_prices(setting: Mapping[str, Mapping[str, float]]) -> dict[str, Price]:
    """The ``usage.prices`` setting (already checked by the settings table) as Prices."""
    return {
        model: Price(float(p["input"]), float(p["output"]), _float(p.get("cached_input")))
        for model, p in setting.items()
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def price_of(prices: Prices, model: str | None) -> Price | None:
    """A model's price: its own, else that of its undated name (``gpt-4o-2024-08-06`` takes
    ``gpt-4o``'s); None when unknown."""
    if model is None:
        return None
    found = prices.get(model)
    if found is None and _DATED.search(model):
        found = prices.get(_DATED.sub("", model))
    return found


@dataclass(frozen=True)
class UsageFilter(Filter):
    by: str = "model"
    room: str | None = None
    session: str | None = None
    project: str | None = None
    since: int | None = None  # epoch ns, as the filters' (query.library.filters.parse_time)
    until: int | None = None
    limit: int | None = None
    cursor: str | None = None


def parse_by(text: str) -> str:
    if text not in KEYS:
        raise QueryError(f"invalid --by {text!r}: expected one of {', '.join(BY)}")
    return text


def encode_cursor(key: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps([key]).encode()).decode().rstrip("=")


def cursor_key(text: str) -> str | None:
    """The last key of the page a cursor follows (only cursors this module made are valid)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        (key,) = json.loads(raw)
    except (ValueError, binascii.Error, TypeError):
        raise QueryError(f"invalid cursor {text!r}") from None
    if key is not None and not isinstance(key, str):
        raise QueryError(f"invalid cursor {text!r}")
    return key


def parse_cursor(text: str) -> str:
    """A cursor parameter, checked."""
    cursor_key(text)
    return text


def _order(key: str | None) -> tuple[bool, str]:
    return (key is None, key or "")


class _Row:
    """One usage row while it is summed up from per-model parts."""

    def __init__(self) -> None:
        self.calls = self.input = self.cached = self.output = 0.0
        self.cost: float | None = 0.0
        self.unpriced_calls = 0.0
        self.tools = 0
        self.errors = 0
        self.p50: float | None = None
        self.p95: float | None = None

    def add_llm(self, model: str | None, amounts: tuple[float, float, float, float],
                prices: Prices, unpriced: set[str | None]) -> None:  # fmt: skip
        calls, input_, cached, output = amounts
        self.calls += calls
        self.input += input_
        self.cached += cached
        self.output += output
        price = price_of(prices, model)
        if price is None:
            unpriced.add(model)
            self.unpriced_calls += calls
            self.cost = None
        elif self.cost is not None:
            cached_price = price.input if price.cached_input is None else price.cached_input
            self.cost += (
                (input_ - cached) * price.input + cached * cached_price + output * price.output
            ) / 1e6

    def record(self) -> Record:
        rate = self.errors / self.tools if self.tools else None
        return {
            "llm_calls": round(self.calls),
            "input_tokens": round(self.input),
            "cached_input_tokens": round(self.cached),
            "output_tokens": round(self.output),
            "cost_usd": None if self.cost is None else round(self.cost, 6),
            "unpriced_calls": round(self.unpriced_calls),
            "tool_calls": self.tools,
            "tool_errors": self.errors,
            "tool_error_rate": None if rate is None else round(rate, 4),
            "tool_p50_ms": None if self.p50 is None else round(self.p50, 3),
            "tool_p95_ms": None if self.p95 is None else round(self.p95, 3),
        }


def _conditions(con: duckdb.DuckDBPyConnection, f: UsageFilter) -> tuple[Any, Any, Any]:
    """(span conditions, metric series conditions, metric time conditions), each (sql, params)."""
    series: list[str] = []
    params: list[Any] = []
    for column, value in (("project", f.project), ("room", f.room), ("session_id", f.session)):
        if value is not None:
            series.append(f"{column} = ?")
            params.append(value)
    bounds = [(">=", f.since), ("<=", f.until)]
    tparams = [t for _, t in bounds if t is not None]

    def in_range(column: str) -> list[str]:
        return [f"{column} {op} make_timestamp_ns(?)" for op, t in bounds if t is not None]

    spans, times = series + in_range("start_time"), in_range("time")
    sparams = [*params, *tparams]
    if f.session is not None:
        # The session's own time window (and room): the zone maps skip the rest of the spans.
        window, wparams = session_window(con, f.session, "spans")
        if window:
            spans.append(window.removeprefix(" AND "))
            sparams += wparams
    return (spans, sparams), (series, params), (times, tparams)


def usage(con: duckdb.DuckDBPyConnection, f: UsageFilter, prices: Prices, limit: int) -> Record:
    """``{"usage": [rows], "next": cursor, "totals": {...}, "unpriced_models": [...]}``:
    one row per value of ``f.by`` (ordered by it, nulls last), paged by ``f.cursor``."""
    by = parse_by(f.by)
    sql, params = usage_sql(con, by, *_conditions(con, f))
    rows: dict[str | None, _Row] = {}
    total = _Row()
    unpriced: set[str | None] = set()
    for part, is_total, key, model, calls, input_, cached, output, errors, p50, p95 in con.execute(
        sql, params
    ).fetchall():
        row = total if is_total else rows.setdefault(key, _Row())
        if part == "llm":
            row.add_llm(model, (calls, input_, cached, output), prices, unpriced)
        elif calls:
            row.tools, row.errors, row.p50, row.p95 = int(calls), int(errors), p50, p95
    keys = sorted(rows, key=_order)
    if f.cursor is not None:
        after = cursor_key(f.cursor)
        keys = [k for k in keys if _order(k) > _order(after)]
    size = f.limit or limit
    page = keys[:size]
    return {
        "usage": [{by: k, **rows[k].record()} for k in page],
        "next": encode_cursor(page[-1]) if len(keys) > size else None,
        "totals": total.record(),
        "unpriced_models": sorted(unpriced, key=_order),
    }


def session_usage(con: duckdb.DuckDBPyConnection, session_id: str, prices: Prices) -> Record:
    """A session's usage totals and unpriced models (its summary's ``usage``)."""
    found = usage(con, UsageFilter(by="model", session=session_id), prices, 1)
    return {**found["totals"], "unpriced_models": found["unpriced_models"]}
