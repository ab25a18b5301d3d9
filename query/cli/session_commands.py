"""``roomscope session …``: list sessions, one's summary and timeline, its traces, logs and
metrics (SPEC 5); ``session export`` is query/cli/transfer.py's."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import nullcontext, suppress
from dataclasses import replace
from typing import Any

import click

from ..library.display import printable
from ..library.filters import (
    MAX_LIMIT,
    MAX_PAGE,
    LogFilter,
    MetricFilter,
    PageFilter,
    SessionFilter,
)
from ..library.records import parse_ts
from . import views
from .choice import NEWEST_RULE, pick_session, session_choice
from .options import (
    SEVERITY,
    SPAN_ID,
    TIME,
    TRACE_ID,
    source,
    span_filter,
    span_filter_options,
    trees,
)
from .output import OutputFormat, emit, output_options
from .pages import LIMIT_HELP, STREAM_PAGE, emit_list, paged, pages, stream_records
from .source import Source
from .transfer import session_export


@click.group()
def session() -> None:
    """Sessions: list them, inspect one, its traces, logs and metrics; export one."""


session.add_command(session_export)


@session.command("list")
@click.option("--room", help="Only sessions of this room.")
@click.option("--project", help="Only sessions of this project.")
@click.option("--active", is_flag=True, help="Only active sessions.")
@click.option("--ended", is_flag=True, help="Only ended sessions.")
@click.option(
    "--since",
    type=TIME,
    help="Seen since: 15m, 2h, 7d or an ISO timestamp (to the ns).",
)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help=LIMIT_HELP)
@output_options
@click.pass_context
def session_list(
    ctx: click.Context,
    room: str | None,
    project: str | None,
    active: bool,
    ended: bool,
    since: int | None,
    limit: int | None,
    output: OutputFormat,
) -> None:
    """Sessions, newest first."""
    if active and ended:
        raise click.UsageError("--active and --ended cannot be used together: give one of them")
    with source(ctx) as src:
        state = True if active else (False if ended else None)
        f = SessionFilter(room=room, active=state, since=since, project=project)
        fetch = paged(src.sessions, f)
        emit_list(output, fetch, "sessions", views.SESSIONS, limit, fields=views.FIELDS["sessions"])


@session.command("get")
@click.argument("session_id")
@output_options
@click.pass_context
def session_get(ctx: click.Context, session_id: str, output: OutputFormat) -> None:
    """A session's summary, then its lifecycle events, log records and error spans in time order."""
    with source(ctx) as src:
        summary = src.session(session_id)

        def fetch(limit: int | None, cursor: str | None) -> dict[str, Any]:
            return {**summary, **src.session_events(session_id, PageFilter(limit, cursor))}

        if output is OutputFormat.TABLE:
            result = fetch(None, None)
            click.echo(
                views.session_summary(result["session"], result["events"], result.get("usage"))
            )
            if result.get("next") is not None:
                click.echo("(the first events; -o jsonl or -o csv prints all of them)", err=True)
        else:
            emit_list(output, fetch, "events", views.EVENTS, None, fields=views.FIELDS["events"])


@session.command("traces", epilog=NEWEST_RULE)
@session_choice
@click.option("--trace-id", type=TRACE_ID, help="Only this trace (32 hex digits).")
@span_filter_options
@click.option("--show-attrs", is_flag=True, help="Show each span's attributes (sorted k=v).")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help=LIMIT_HELP)
@output_options
@click.pass_context
def session_traces(
    ctx: click.Context,
    session_id: str | None,
    room: str | None,
    project: str | None,
    show_attrs: bool,
    limit: int | None,
    output: OutputFormat,
    **filters: Any,
) -> None:
    """Spans of one session as indented trees: traces in which at least one span matches."""
    with source(ctx) as src:
        sid = pick_session(src, session_id, room, project, output, "spans")
        if sid is None:
            return
        if output in (OutputFormat.JSONL, OutputFormat.CSV):  # every span, each read once
            spans = src.session_spans_stream(sid, span_filter(**filters), STREAM_PAGE)
            stream_records(output, spans, limit, views.FIELDS["spans"])
            return
        fetch = paged(lambda f: src.session_spans(sid, f), span_filter(**filters))
        emit_list(output, fetch, "spans", [], limit, trees(show_attrs), views.FIELDS["spans"])


@session.command("logs", epilog=NEWEST_RULE)
@session_choice
@click.option("--severity", type=SEVERITY, help="At least this level: TRACE..FATAL or 1-24.")
@click.option("--grep", help="Body contains TEXT (case-insensitive).")
@click.option("--trace-id", type=TRACE_ID, help="Only the records of this trace (32 hex digits).")
@click.option("--span-id", type=SPAN_ID, help="Only the records of this span (16 hex digits).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records until Ctrl-C.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help=LIMIT_HELP)
@output_options
@click.pass_context
def session_logs(
    ctx: click.Context,
    session_id: str | None,
    room: str | None,
    project: str | None,
    severity: int | None,
    grep: str | None,
    trace_id: str | None,
    span_id: str | None,
    follow: bool,
    limit: int | None,
    output: OutputFormat,
) -> None:
    """A session's log records in time order."""
    with source(ctx) as src, suppress(KeyboardInterrupt) if follow else nullcontext():
        sid = pick_session(src, session_id, room, project, output, "logs")
        if sid is None:
            return
        f = LogFilter(severity=severity, grep=grep, trace_id=trace_id, span_id=span_id)
        fetch = paged(lambda g: src.session_logs(sid, g), f)
        if not follow:
            emit_list(output, fetch, "logs", views.LOGS, limit, fields=views.FIELDS["logs"])
            return
        result = fetch(min(limit, MAX_PAGE) if limit else None, None)  # then new records
        emit(output, result, "logs", views.LOGS, fields=views.FIELDS["logs"])
        follow_logs(src, sid, f, result["logs"], output)


def follow_logs(
    src: Source, sid: str, f: LogFilter, seen: list[dict[str, Any]], output: OutputFormat
) -> None:
    """Poll by received_at cursor; new records print one per line (table rows or jsonl)."""
    cursor = max((parse_ts(r["received_at"]) for r in seen), default=0)
    fmt = OutputFormat.JSONL if output is OutputFormat.JSON else output
    click.echo(f"following new log records of session {printable(sid)} (Ctrl-C to stop)", err=True)
    # Ctrl-C ends the loop between polls: a KeyboardInterrupt raised inside an HTTP request can
    # leave httpx's connection pool locked, and closing the client then hangs.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            fetch = paged(lambda g: src.session_logs(sid, g), replace(f, after=cursor))
            new = [r for page in pages(fetch, None, MAX_PAGE) for r in page["logs"]]
            if new:
                cursor = max(parse_ts(r["received_at"]) for r in new)
                emit(fmt, {"logs": new}, "logs", views.LOGS)
                sys.stdout.flush()
    finally:
        signal.signal(signal.SIGINT, previous)


@session.command("metrics", epilog=NEWEST_RULE)
@session_choice
@click.option("--name", help="Only points of this metric.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help=LIMIT_HELP)
@output_options
@click.pass_context
def session_metrics(
    ctx: click.Context,
    session_id: str | None,
    room: str | None,
    project: str | None,
    name: str | None,
    limit: int | None,
    output: OutputFormat,
) -> None:
    """A session's metric points."""
    with source(ctx) as src:
        sid = pick_session(src, session_id, room, project, output, "metrics")
        if sid is None:
            return
        fetch = paged(lambda f: src.session_metrics(sid, f), MetricFilter(name))
        emit_list(output, fetch, "metrics", views.METRICS, limit, fields=views.FIELDS["metrics"])
