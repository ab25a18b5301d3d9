"""The ``roomscope`` command line: a thin click shell over the query library."""

from __future__ import annotations

import click

from collector.cli import serve


@click.group()
@click.option("--config", "config", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--db", "db", type=click.Path(dir_okay=False), help="Read this store file directly.")
@click.option("--server", "server", help="Query a running collector at this URL.")
@click.version_option(package_name="roomscope")
@click.pass_context
def main(ctx: click.Context, config: str | None, db: str | None, server: str | None) -> None:
    """roomscope: OpenTelemetry for room-based applications, stored in DuckDB."""
    ctx.obj = {"config": config, "db": db, "server": server}


main.add_command(serve)
