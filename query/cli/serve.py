"""``roomscope serve`` and ``roomscope token``: the collector's commands, thin shells over
collector.server (composed with the query API) and collector.auth."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import click

from collector.auth import SCOPES, create_token
from collector.errors import RoomscopeError
from collector.settings import load_settings
from collector.store import parse_store

if TYPE_CHECKING:
    from collector.server import Collector


@click.command("serve")
@click.option("--db", "db", type=click.Path(dir_okay=False), help="DuckDB store file (store.path).")
@click.option(
    "--store",
    "store",
    metavar="ducklake:URL",
    help="Write this lake instead of a file: ducklake:postgresql://user@host:port/db"
    " (store.backend, store.catalog).",
)
@click.option(
    "--data-path",
    help="The lake's data files: a directory or s3://bucket/prefix (store.data_path).",
)
@click.option("--host", help="Address the OTLP receivers bind to (server.host).")
@click.option("--grpc-port", type=int, help="OTLP/gRPC port, 0 = free port (server.grpc_port).")
@click.option("--http-port", type=int, help="OTLP/HTTP port, 0 = free port (server.http_port).")
@click.option("--api-port", type=int, help="Query API port, 0 = free port (server.api_port).")
@click.option("--api-host", help="Address the query API binds to (server.api_host).")
@click.pass_context
def serve(
    ctx: click.Context, db, store, data_path, host, grpc_port, http_port, api_port, api_host
) -> None:
    """Run the collector: OTLP ingest (gRPC + HTTP) into DuckDB, plus the query API.

    With --store ducklake:... it is one of any number of replicas writing one lake."""
    obj = ctx.obj or {}
    config = obj.get("config")
    store = store or obj.get("store")
    data_path = data_path or obj.get("data_path")
    try:
        lake = lake_flags(store, data_path)
    except RoomscopeError as exc:
        raise click.UsageError(str(exc)) from None
    flags = {
        **lake,
        "store.path": db or (ctx.obj or {}).get("db"),
        "server.host": host,
        "server.grpc_port": grpc_port,
        "server.http_port": http_port,
        "server.api_port": api_port,
        "server.api_host": api_host,
    }
    try:
        settings = load_settings(config, flags=flags)
    except RoomscopeError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per forwarded batch

    # The server (gRPC, protobuf, the API app) is imported here, not with the CLI: ~20 MB and
    # ~0.1 s less for every read command (python -X importtime).
    from ..http.serving import serving_collector

    def ready(c: Collector) -> None:
        click.echo(
            f"roomscope ready: OTLP/gRPC :{c.ports['grpc']}  OTLP/HTTP :{c.ports['http']}"
            f"  API {'https' if c.tls else 'http'}://{settings.get('server.api_host')}:{c.ports['api']}"
            f"  store {c.store.location}",
            err=True,
        )

    try:
        asyncio.run(serving_collector(settings).serve(on_ready=ready))
    except RoomscopeError as exc:
        raise click.ClickException(str(exc)) from None


def lake_flags(store: str | None, data_path: str | None) -> dict[str, str | None]:
    """The settings ``--store ducklake:URL`` and ``--data-path`` stand for."""
    if store is None:
        return {"store.data_path": data_path}
    return {
        "store.backend": "ducklake",
        "store.catalog": parse_store(store),
        "store.data_path": data_path,
    }


@click.group("token")
def token_group() -> None:
    """Bearer tokens for auth.enabled (stored as SHA-256 hashes in auth.tokens_file)."""


@token_group.command("create")
@click.option("--project", required=True, help="The project the token reads or writes.")
@click.option(
    "--scope", type=click.Choice(SCOPES), required=True, help="ingest (OTLP) or query (API)."
)
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False),
    help="Tokens file to append to (default: auth.tokens_file).",
)
@click.pass_context
def token_create(ctx: click.Context, project: str, scope: str, tokens_file: str | None) -> None:
    """Create a token: prints it once; only its hash is stored."""
    try:
        if tokens_file is None:
            config = (ctx.find_root().obj or {}).get("config")
            tokens_file = load_settings(config).get("auth.tokens_file")
        token = create_token(tokens_file, project, scope)
    except RoomscopeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(f"{scope} token for project {project!r} added to {tokens_file}", err=True)
