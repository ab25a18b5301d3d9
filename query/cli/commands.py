"""The ``roomscope`` command line: a thin click shell over the query library (SPEC 5)."""

from __future__ import annotations

import sys
from typing import Any

import click

from collector.errors import RoomscopeError

from ..library import traceql
from ..library.display import printable
from ..library.filters import (
    MAX_LIMIT,
    PageFilter,
)
from . import views
from .migrate import migrate
from .options import TIME, TRACE_ID, Parsed, source, span_filter, span_filter_options, trees
from .output import OutputFormat, emit, emit_sql, output_options
from .pages import LIMIT_HELP, emit_list, paged
from .prune import prune_cmd
from .serve import serve, token_group
from .session_commands import session
from .status import status_cmd
from .transfer import import_command
from .usage import usage_cmd


class _Group(click.Group):
    """Turns roomscope's own errors into one clear line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RoomscopeError as exc:
            raise click.ClickException(printable(str(exc))) from None


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


main.add_command(session)  # query/cli/session_commands.py


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
    type=Parsed("TRACEQL", traceql.checked),
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
