"""What the ``roomscope`` commands share: option types that parse with the query library's
parsers, the span filter's options, the store or server a command reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..library.errors import QueryError
from ..library.filters import (
    SpanFilter,
    parse_attrs,
    parse_duration,
    parse_severity,
    parse_time,
)
from ..library.traces import check_span_id, check_trace_id, render_trees
from .source import Source, open_source


class Parsed(click.ParamType):
    def __init__(self, name: str, parse: Callable[[str], Any]):
        self.name, self.parse = name, parse

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.parse(value) if isinstance(value, str) else value
        except QueryError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Parsed("DURATION", parse_duration)
TIME = Parsed("TIME", parse_time)
ATTRS = Parsed("K=V", lambda v: parse_attrs([v]))
SEVERITY = Parsed("LEVEL", parse_severity)
TRACE_ID = Parsed("TRACE_ID", check_trace_id)
SPAN_ID = Parsed("SPAN_ID", check_span_id)


@contextmanager
def source(ctx: click.Context) -> Iterator[Source]:
    src = open_source(**ctx.find_root().obj)
    try:
        yield src
    finally:
        src.close()


def span_filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--name, --min/--max-duration, --attrs: folded into ``filters: dict`` by span_filter()."""
    for opt in reversed(
        [
            click.option("--name", help="Span name contains TEXT (case-insensitive)."),
            click.option(
                "--min-duration",
                type=DURATION,
                help="Span duration (not the trace's) >= D, inclusive; bare number = ms, or"
                " with ns/us/µs/ms/s/m: 1000, 1.5s, 250ms.",
            ),
            click.option(
                "--max-duration", type=DURATION, help="Span duration <= D, inclusive (as above)."
            ),
            click.option(
                "--attrs",
                type=ATTRS,
                multiple=True,
                help="K=V (repeatable, or K1=V1,K2=V2): all must hold; span attributes, then"
                " resource attributes; an array attribute matches when an element is V; quote a"
                ' value holding a comma (K="a,b") or escape it (K=a\\,b); status=error also'
                " matches status code ERROR; service=, name=, kind= fall back to the span's own"
                " fields.",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def span_filter(**kw: Any) -> SpanFilter:
    kw["attrs"] = tuple(pair for pairs in kw.get("attrs", ()) for pair in pairs)
    return SpanFilter(**kw)


def trees(show_attrs: bool) -> Callable[[list[dict[str, Any]]], str]:
    """The table output of spans: indented trees (render_trees)."""
    return lambda spans: "\n".join(render_trees(spans, show_attrs)).rstrip()
