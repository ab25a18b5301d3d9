"""``roomscope prune``: delete old data from a store file no collector holds (a running
collector's retention job does it while it runs)."""

from __future__ import annotations

from typing import Any

import click

from collector import durations

from ..library.errors import QueryError
from .source import _answers, configured_url, settings_for


class _Age(click.ParamType):
    name = "AGE"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return age_seconds(value) if isinstance(value, str) else value
        except QueryError as exc:
            self.fail(str(exc), param, ctx)


@click.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    type=_Age(),
    help="Delete records older than this (30d, 12h, 90m) and sessions last seen before it.",
)
@click.pass_context
def prune_cmd(ctx: click.Context, older_than: float) -> None:
    """Delete old data from a store file (the collector's retention.max_age does it while
    it runs); --db names the file, else the configured store.path."""
    from collector.store import prune_store

    obj = ctx.find_root().obj
    settings = settings_for(obj["config"])
    path = obj["db"]
    if path is None:
        url = obj["server"] or configured_url(settings)
        if obj["server"] or _answers(url, settings.get("query.probe_timeout")):
            raise QueryError(
                f"a collector is running at {url} and owns the store: its retention job prunes"
                " it (setting retention.max_age); or stop it and run roomscope prune"
            )
        path = settings.get("store.path")
    pruned = prune_store(settings.replace(**{"store.path": path}), older_than)
    rows = ", ".join(f"{n} {table}" for table, n in sorted(pruned.rows.items()) if n) or "nothing"
    click.echo(f"pruned {path}: deleted {rows}")


def age_seconds(text: str) -> float:
    """``30d``, ``12h``, ``90m`` → seconds (more than 0)."""
    try:
        seconds = durations.seconds(text)
    except ValueError:
        raise QueryError(
            f"invalid age {text!r}: use a number with s, m, h, d or w, e.g. 7d"
        ) from None
    if seconds <= 0:
        raise QueryError(f"invalid age {text!r}: must be more than 0")
    return seconds
