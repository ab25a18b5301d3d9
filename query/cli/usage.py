"""``roomscope usage``: agent usage (SPEC 11) per model, provider, room, session, service or
tool, from the query library (``--db``) or a server's ``GET /api/v1/usage`` (``--server``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from ..library.errors import QueryError
from ..library.filters import MAX_LIMIT, parse_time
from ..library.usage import BY, UsageFilter
from .output import Column, OutputFormat, cell, emit, output_options
from .source import open_source


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        return None if value is None else parse_time(value)
    except QueryError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _cost(r: dict[str, Any]) -> str:
    if not (r["llm_calls"] or r["input_tokens"] or r["output_tokens"]):
        return ""
    return "unpriced" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"


def _rate(r: dict[str, Any]) -> str:
    rate = r["tool_error_rate"]
    return "" if rate is None else f"{rate * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}ms"


def columns(by: str) -> list[Column]:
    return [
        (by.upper(), lambda r: "(none)" if r.get(by) is None else r[by]),
        ("CALLS", lambda r: r["llm_calls"]),
        ("INPUT", lambda r: r["input_tokens"]),
        ("CACHED", lambda r: r["cached_input_tokens"]),
        ("OUTPUT", lambda r: r["output_tokens"]),
        ("COST USD", _cost),
        ("TOOLS", lambda r: r["tool_calls"]),
        ("ERRORS", _rate),
        ("P50", lambda r: _ms(r["tool_p50_ms"])),
        ("P95", lambda r: _ms(r["tool_p95_ms"])),
    ]


@click.command("usage")
@click.option("--room", help="Only this room.")
@click.option("--session", help="Only this session.")
@click.option("--project", help="Only this project.")
@click.option("--since", callback=_time, help="From this time: 15m, 2h, 7d or an ISO timestamp.")
@click.option("--until", callback=_time, help="Up to this time: 15m, 2h, 7d or an ISO timestamp.")
@click.option(
    "--by", type=click.Choice(BY), default="model", show_default=True, help="One row per this."
)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help="At most N rows.")
@output_options
@click.pass_context
def usage_cmd(ctx: click.Context, output: OutputFormat, limit: int | None, **kw: Any) -> None:
    """Agent usage: LLM calls, tokens, cost (usage.prices) and tool calls with p50/p95 latency
    and error rate, from GenAI spans and metrics and MeshAgent's usage counters."""
    f = UsageFilter(**kw, limit=min(limit or MAX_LIMIT, 10_000))
    src = open_source(**ctx.find_root().obj)
    try:
        result = src.usage(f)
        rows = result["usage"]
        while result["next"] is not None and (limit is None or len(rows) < limit):
            result = src.usage(replace(f, cursor=result["next"]))
            rows += result["usage"]
    finally:
        src.close()
    result = {**result, "usage": rows[:limit] if limit else rows, "next": None}
    emit(output, result, "usage", columns(f.by))
    if output is OutputFormat.TABLE and rows:
        t = result["totals"]
        cost = _cost(t)
        click.echo(
            f"\ntotal: {t['llm_calls']} LLM calls, {t['input_tokens']} input tokens"
            f" ({t['cached_input_tokens']} cached), {t['output_tokens']} output tokens,"
            f" cost {cost + ' USD' if cost not in ('', 'unpriced') else cost or 'none'};"
            f" {t['tool_calls']} tool calls, {t['tool_errors']} failed"
        )
        if result["unpriced_models"]:
            names = ", ".join(cell(m) if m is not None else "(no model)" for m in
                              result["unpriced_models"])  # fmt: skip
            click.echo(f'unpriced models (add [usage.prices."MODEL"]): {names}', err=True)
