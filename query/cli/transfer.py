"""``roomscope session export`` and ``roomscope import``: sessions out as files, OTLP files in
(SPEC 12; docs/export-import.md)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from collector.errors import StoreError
from collector.tagging import Tagger

from ..library.otlp_export import FORMATS, TABLES
from .source import open_source, settings_for

if TYPE_CHECKING:  # imported where used: the write path weighs ~8 MB in every CLI process
    from collector.file_import import ImportSummary, Sink


@click.command("export")
@click.argument("session_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="otlp-json",
    show_default=True,
    help="otlp-json: OTLP/JSON lines (one export request per line); otlp-proto: protobuf"
    " export requests, each after a 4-byte big-endian length; parquet: one file per table.",
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(),
    help="File to write (default: stdout). For parquet, a directory (created if needed) that"
    " gets spans.parquet, logs.parquet and metric_points.parquet.",
)
@click.pass_context
def session_export(ctx: click.Context, session_id: str, fmt: str, out: str | None) -> None:
    """Write one session's spans, logs and metric points to a file, streamed in chunks."""
    obj = ctx.find_root().obj
    tagger = Tagger.from_settings(settings_for(obj["config"]))
    if fmt == "parquet" and not out:
        raise click.UsageError("--format parquet writes a directory: give it with -o DIR")
    if fmt == "otlp-proto" and not out and sys.stdout.isatty():
        raise click.UsageError("otlp-proto is binary: write it to a file with -o FILE")
    src = open_source(**obj)
    try:
        if fmt == "parquet":
            assert out is not None
            directory = Path(out).expanduser()
            directory.mkdir(parents=True, exist_ok=True)
            for table in TABLES:
                path = directory / f"{table}.parquet"
                written = _write(src.export_session(session_id, fmt, tagger, table), path)
                click.echo(f"wrote {path} ({written:,} bytes)", err=True)
            return
        chunks = src.export_session(session_id, fmt, tagger)
        if out:
            written = _write(chunks, Path(out).expanduser())
            click.echo(f"wrote {out} ({written:,} bytes)", err=True)
        else:
            stream = sys.stdout.buffer
            for chunk in chunks:
                stream.write(chunk)
            stream.flush()
    finally:
        src.close()


def _write(chunks: Iterator[bytes], path: Path) -> int:
    """Write to PATH.partial, renamed to PATH once complete (no half file under its name)."""
    partial = path.with_name(path.name + ".partial")
    written = 0
    try:
        with partial.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                written += len(chunk)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False),
    help="Store file to import into (default: the global --db, else store.path).",
)
@click.option(
    "--server",
    "server",
    hidden=True,
    help="Refused with a hint: a collector takes records on its OTLP port (--otlp).",
)
@click.option(
    "--otlp",
    "otlp_url",
    help="Send to a running collector's OTLP receiver instead of writing a store file:"
    " http(s)://HOST:PORT for OTLP/HTTP (e.g. http://127.0.0.1:4318), grpc(s)://HOST:PORT"
    " for OTLP/gRPC.",
)
@click.option(
    "--ingest-token",
    envvar="ROOMSCOPE_INGEST_TOKEN",
    help="Ingest token for --otlp when the collector has auth on (ROOMSCOPE_INGEST_TOKEN).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.pass_context
def import_command(
    ctx: click.Context,
    files: tuple[str, ...],
    db: str | None,
    server: str | None,
    otlp_url: str | None,
    ingest_token: str | None,
    as_json: bool,
) -> None:
    """Import OTLP files: OTLP/JSON lines, length-prefixed OTLP protobuf (gzip or not), or
    parquet of roomscope's tables, through the receivers' decode and tag path.

    Into the store file of --db (or the configured one), or with --otlp into a running
    collector. Bad lines and records are reported one by one, the rest imported; exit 1 when
    any was refused."""
    obj = ctx.find_root().obj
    db = db or obj.get("db")
    if server or obj.get("server"):
        raise click.UsageError(
            "import sends records through a collector's OTLP/HTTP port: use --otlp URL (e.g."
            " http://127.0.0.1:4318); --server is the query API"
        )
    if otlp_url and db:
        raise click.UsageError("give --db PATH or --otlp URL, not both")
    settings = settings_for(obj["config"])
    tagger = Tagger.from_settings(settings)
    from collector.file_import import import_files
    from collector.otlp_files import files_of

    sink, target = _sink(settings, db, otlp_url, ingest_token)
    paths = list(files)
    total = sum(p.stat().st_size for p in files_of(paths) if p.is_file())
    if sys.stderr.isatty() and not as_json:
        with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
            summary = import_files(paths, sink, tagger, bar.update)
    else:
        summary = import_files(paths, sink, tagger)
    _report(summary, target, as_json)
    if summary.failed:
        ctx.exit(1)


def _sink(
    settings: Any, db: str | None, otlp_url: str | None, token: str | None
) -> tuple[Sink, str]:
    from collector.file_import import OtlpSink, StoreSink

    timeout = settings.get("query.timeout") + 30
    if otlp_url:
        return OtlpSink(
            otlp_url, Tagger.from_settings(settings), token=token, timeout=timeout
        ), otlp_url
    path = db or settings.get("store.path")
    try:
        return StoreSink(settings.replace(**{"store.path": path})), path
    except StoreError as exc:
        if "in use" not in str(exc):
            raise
        if db:
            raise StoreError(
                f"store file {path} is in use by a running collector: import into it through"
                " its OTLP/HTTP port with --otlp URL (e.g. --otlp http://127.0.0.1:4318)"
            ) from None
    host = settings.get("server.host")
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.get('server.http_port')}"
    click.echo(f"store {path} is in use by a running collector: sending to {url}", err=True)
    return OtlpSink(url, Tagger.from_settings(settings), token=token, timeout=timeout), url


def _report(summary: ImportSummary, target: str, as_json: bool) -> None:
    if as_json:
        import json

        click.echo(json.dumps({"target": target, **summary.as_dict()}))
    per_table = ", ".join(f"{t} {n:,}" for t, n in summary.records.items()) or "nothing"
    lines = [
        f"imported {sum(summary.records.values()):,} records ({per_table}) in"
        f" {summary.requests:,} requests into {target}; {len(summary.sessions):,} sessions"
        + (
            f", {summary.roomed:,} records with a room but no session id (sessions inferred)"
            if summary.roomed
            else ""
        )
    ]
    if summary.failed:
        lines.append(
            f"refused: {summary.rejected:,} records rejected, {summary.bad:,} lines or messages bad"
        )
        lines.extend(f"  {reason}" for reason in summary.reasons)
        more = summary.rejected + summary.bad - len(summary.reasons)
        if more > 0 and len(summary.reasons) == 20:
            lines.append("  (more not shown)")
    for line in lines:
        click.echo(line, err=True)
