"""``roomscope status``: the forwarding queue per endpoint (SPEC 12), from the query library
(``--db``) or a server's ``GET /api/v1/status`` (``--server``)."""

from __future__ import annotations

from typing import Any

import click

from .output import Column, OutputFormat, emit, output_options
from .source import open_source
from .views import short_time


def _state(e: dict[str, Any]) -> str:
    return "active" if e["active"] else "not configured"


STATUS: list[Column] = [
    ("ENDPOINT", lambda e: e["endpoint"]),
    ("URL", lambda e: e["url"]),
    ("STATE", _state),
    ("QUEUED", lambda e: e["queued_batches"]),
    ("QUEUED BYTES", lambda e: e["queued_bytes"]),
    ("SENT", lambda e: e["sent_batches"]),
    ("SENT RECORDS", lambda e: e["sent_records"]),
    ("DROPPED", lambda e: e["dropped_batches"]),
    ("DROPPED RECORDS", lambda e: e["dropped_records"]),
    ("LAST SENT", lambda e: short_time(e["last_sent_at"])),
    ("LAST ERROR", lambda e: e["last_error"]),
]


@click.command("status")
@output_options
@click.pass_context
def status_cmd(ctx: click.Context, output: OutputFormat) -> None:
    """Forwarding (forward.endpoints): per endpoint the batches queued, sent and dropped (queue
    full, or refused by the upstream for good) and the last error."""
    src = open_source(**ctx.find_root().obj)
    try:
        result = src.status()
    finally:
        src.close()
    emit(output, result, "endpoints", STATUS)
    if output is OutputFormat.TABLE and not result["endpoints"]:
        click.echo("no forwarding endpoints (setting forward.endpoints)", err=True)
