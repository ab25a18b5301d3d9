"""``roomscope migrate --to ducklake:...``: copy a store file into a lake (SPEC 10), a thin
shell over collector.store.migrate_to_lake."""

from __future__ import annotations

import json

import click

from collector.errors import RoomscopeError
from collector.settings import load_settings
from collector.store import migrate_to_lake, parse_store


@click.command("migrate")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="ducklake:URL",
    help="The lake to copy into: ducklake:postgresql://user@host:port/db (must hold no records).",
)
@click.option(
    "--data-path",
    help="The lake's data files: a directory or s3://bucket/prefix (store.data_path).",
)
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False),
    help="The store file to copy (default: the global --db, else store.path); no collector"
    " may hold it.",
)
@click.pass_context
def migrate(ctx: click.Context, to: str, data_path: str | None, db: str | None) -> None:
    """Copy a DuckDB store file into a new lake, then point collectors at the lake."""
    obj = ctx.find_root().obj or {}
    try:
        catalog = parse_store(to)
    except RoomscopeError as exc:
        raise click.BadParameter(str(exc), param_hint="'--to'") from None
    flags = {
        "store.backend": "ducklake",
        "store.catalog": catalog,
        "store.data_path": data_path or obj.get("data_path"),
    }
    try:
        settings = load_settings(obj.get("config"), flags=flags)
        path = db or obj.get("db") or settings.get("store.path")
        copied = migrate_to_lake(settings, path)
    except RoomscopeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"from": path, "to": to, "rows": copied}))
