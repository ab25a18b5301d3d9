"""The ``roomscope`` command line: a thin click shell over the query library (SPEC 5)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import replace
from typing import Any

import click

from collector.errors import RoomscopeError

from ..library import traceql
from ..library.display import printable
from ..library.errors import QueryError
from ..library.filters import (
    MAX_LIMIT,
    MAX_PAGE,
    LogFilter,
    MetricFilter,
    PageFilter,
    SessionFilter,
    SpanFilter,
    parse_attrs,
    parse_duration,
    parse_severity,
    parse_time,
)
from ..library.records import parse_ts
from ..library.traces import check_span_id, check_trace_id, render_trees
from . import views
from .choice import NEWEST_RULE, pick_session, session_choice
from .migrate import migrate
from .output import OutputFormat, emit, emit_sql, output_options
from .pages import LIMIT_HELP, STREAM_PAGE, emit_list, paged, pages, stream_records
from .prune import prune_cmd
from .serve import serve, token_group
from .source import Source, open_source
from .status import status_cmd
from .transfer import import_command, session_export
from .usage import usage_cmd


class _Group(click.Group):
    """Turns roomscope's own errors into one clear line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RoomscopeError as exc:
            raise click.ClickException(printable(str(exc))) from None


class _Parsed(click.ParamType):
    def __init__(self, name: str, parse: Callable[[str], Any]):
        self.name, self.parse = name, parse

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.parse(value) if isinstance(value, str) else value
        except QueryError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Parsed("DURATION", parse_duration)
TIME = _Parsed("TIME", parse_time)
ATTRS = _Parsed("K=V", lambda v: parse_attrs([v]))
SEVERITY = _Parsed("LEVEL", parse_severity)
TRACE_ID = _Parsed("TRACE_ID", check_trace_id)
SPAN_ID = _Parsed("SPAN_ID", check_span_id)


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


@click.group(cls=_Group)
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), metavar="FILE", help="TOML config file."
)
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Read this store file directly (read-only; no collector may hold it).",
)
@click.option(
    "--store",
    "store",
    metavar="ducklake:URL",
    help="Read this lake (ducklake:postgresql://user@host:port/db; store.catalog) directly.",
)
@click.option(
    "--data-path",
    "data_path",
    metavar="PATH",
    help="The lake's data files with --store: a directory or s3://bucket/prefix (store.data_path).",
)
@click.option(
    "--server",
    "server",
    metavar="URL",
    help="Query a running collector's API at this URL, e.g. http://127.0.0.1:4320.",
)
@click.option(
    "--token",
    envvar="ROOMSCOPE_TOKEN",
    metavar="TOKEN",
    help="Query token sent to the server as a bearer token (ROOMSCOPE_TOKEN).",
)
@click.version_option(package_name="roomscope")
@click.pass_context
def main(
    ctx: click.Context,
    config: str | None,
    db: str | None,
    store: str | None,
    data_path: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """roomscope: OpenTelemetry for room-based applications, stored in DuckDB.

    Read commands take their data from --db PATH or --server URL (not both), or from a lake
    with --store ducklake:URL --data-path PATH. With neither:
    the configured server (server.api_host and server.api_port, default
    http://127.0.0.1:4320) if it answers within query.probe_timeout, else the configured
    store file (store.path), or lake when store.backend is "ducklake".
    """
    if db is not None and server is not None:
        raise click.UsageError(
            "--db and --server cannot be used together: --db PATH reads a store file,"
            " --server URL queries a running collector; give one of them"
        )
    if store is not None and (db is not None or server is not None):
        raise click.UsageError("--store cannot be used with --db or --server: give one of them")
    if store is not None and not store.startswith("ducklake:"):
        raise click.BadParameter(
            "give ducklake:postgresql://user@host:port/db", param_hint="'--store'"
        )
    ctx.obj = {"config": config, "db": db, "server": server, "token": token}
    ctx.obj.update(store=store, data_path=data_path)


main.add_command(serve)
main.add_command(token_group)
main.add_command(import_command)
main.add_command(usage_cmd)
main.add_command(migrate)


@main.group()
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


@main.command("traces")
@click.option("--room", help="Only spans of this room.")
@click.option("--session", help="Only spans of this session.")
@click.option("--service", help="Only spans of this service.")
@span_filter_options
@click.option(
    "--since", type=TIME, help="Started since: 15m, 2h, 7d or an ISO timestamp (to the ns)."
)
@click.option(
    "--until", type=TIME, help="Started until: 15m, 2h, 7d or an ISO timestamp (to the ns)."
)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help=LIMIT_HELP)
@click.option(
    "-q",
    "--query",
    "q",
    type=_Parsed("TRACEQL", traceql.checked),
    help='A TraceQL spanset filter: \'{ resource.room = "lobby" && duration > 1s'
    " && status = error }' (docs/grafana.md#traceql).",
)
@output_options
@click.pass_context
def traces_cmd(ctx: click.Context, output: OutputFormat, limit: int | None, **filters: Any) -> None:
    """Span search across sessions, newest first. Durations are SPAN durations, not traces'."""
    with source(ctx) as src:
        fetch = paged(src.traces, span_filter(**filters))
        emit_list(output, fetch, "spans", views.SPANS, limit, fields=views.FIELDS["spans"])


@main.command("trace")
@click.argument("trace_id", type=TRACE_ID)
@click.option("--show-attrs", is_flag=True, help="Show each span's attributes (sorted k=v).")
@output_options
@click.pass_context
def trace_cmd(ctx: click.Context, trace_id: str, show_attrs: bool, output: OutputFormat) -> None:
    """One trace as an indented span tree."""
    with source(ctx) as src:
        result = src.trace(trace_id)
    emit(output, result, "spans", [], trees(show_attrs), views.FIELDS["spans"])


@main.command("sql")
@click.argument("query")
@output_options
@click.pass_context
def sql_cmd(ctx: click.Context, query: str, output: OutputFormat) -> None:
    """Read-only SQL over the tables (QUERY, or - to read it from stdin)."""
    text = sys.stdin.read() if query == "-" else query
    with source(ctx) as src:
        result = src.sql(text)
    emit_sql(output, result)


@main.command("rooms")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), help=LIMIT_HELP)
@output_options
@click.pass_context
def rooms_cmd(ctx: click.Context, limit: int | None, output: OutputFormat) -> None:
    """Rooms (per project, by name) with session counts and last activity."""
    with source(ctx) as src:
        fetch = paged(src.rooms, PageFilter())
        emit_list(output, fetch, "rooms", views.ROOMS, limit, fields=views.FIELDS["rooms"])


@main.command("demo")
@click.option("--db", type=click.Path(dir_okay=False), help="Store file (default: a temp dir).")
@click.option(
    "--serve",
    is_flag=True,
    help="Keep the collector running with live demo telemetry and print the console's URL;"
    " Ctrl-C stops it (the store is kept).",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    help="With --serve: the query API and console port (default 4320 if free, else any; 0: any).",
)
def demo_cmd(db: str | None, serve: bool, api_port: int | None) -> None:
    """Start a collector on a fresh store, send a realistic workload, show example queries."""
    if serve:
        from .demo_serve import serve_demo

        return serve_demo(db, api_port)
    if api_port is not None:
        raise click.UsageError("--api-port goes with --serve")
    from .demo import run_demo  # the OpenTelemetry SDK exporters load only for the demo

    run_demo(main, db)


main.add_command(prune_cmd)  # query/cli/prune.py
main.add_command(status_cmd)  # query/cli/status.py
