"""Output writers: table (default), json, jsonl, csv — one ``-o/--output`` option for every read.

``output_options`` folds the flag into one :class:`OutputFormat` value; :func:`emit` writes a
result object (``{"spans": [...]}``) in that format, with table columns given as
``(header, record -> text)`` pairs.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ..library.display import printable
from ..library.values import json_text

F = TypeVar("F", bound=Callable[..., Any])
Column = tuple[str, Callable[[dict[str, Any]], Any]]


class OutputFormat(enum.Enum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


def output_options(fn: F) -> F:
    """Add ``-o/--output table|json|jsonl|csv`` as one ``output: OutputFormat`` argument."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice([f.value for f in OutputFormat]),
        default=OutputFormat.TABLE.value,
        show_default=True,
        callback=lambda _ctx, _param, value: OutputFormat(value),
        help="Output format (json: one object; jsonl: one record per line).",
    )(fn)


def cell(value: Any) -> str:
    """A value as one line of table text, control characters escaped (display.printable)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return " ".join(f"{printable(str(k))}={cell(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return printable(str(value))


def flat(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json_text(value, ensure_ascii=False, separators=(",", ":"))
    return "" if value is None else value


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain aligned columns; the last column is not padded. Control characters in headers
    and cells are escaped (a newline would break the rows, an escape sequence the terminal)."""
    table = [[printable(c) for c in row] for row in [headers, *rows]]
    widths = [len(h) for h in table[0]]
    for row in table[1:]:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = []
    for row in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def dumps(obj: Any) -> str:
    """Always valid JSON: never a bare NaN or Infinity (SPEC 8)."""
    return json_text(obj, ensure_ascii=False, indent=2)


def emit(
    fmt: OutputFormat,
    result: dict[str, Any],
    key: str,
    columns: Sequence[Column],
    table_text: Callable[[list[dict[str, Any]]], str] | None = None,
    fields: Sequence[str] = (),
) -> None:
    """Write ``result`` (whose records are ``result[key]``) in ``fmt``; ``fields``: the
    records' keys, the csv header of an empty result."""
    records: list[dict[str, Any]] = result.get(key) or []
    if fmt is OutputFormat.JSON:
        click.echo(dumps(result))
    elif fmt is OutputFormat.JSONL:
        for record in records:
            click.echo(json_text(record, ensure_ascii=False))
    elif fmt is OutputFormat.CSV:
        click.echo(to_csv(list(records[0]) if records else list(fields), records), nl=False)
    elif not records:
        click.echo(f"no {key.replace('_', ' ')} found", err=True)
    elif table_text is not None:
        click.echo(table_text(records))
    else:
        rows = [[cell(fn(r)) for _h, fn in columns] for r in records]
        click.echo(format_table([h for h, _fn in columns], rows))


def to_csv(headers: Sequence[str], records: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if headers:
        writer.writerow(headers)
    for r in records:
        writer.writerow([flat(r.get(h)) for h in headers])
    return buf.getvalue()


def emit_sql(fmt: OutputFormat, result: dict[str, Any]) -> None:
    """SQL results: ``{"columns": [...], "rows": [[...]]}`` in json, the others per row."""
    columns, rows = result["columns"], result["rows"]
    if fmt is OutputFormat.JSON:
        click.echo(dumps(result))
    elif fmt is OutputFormat.JSONL:
        for row in rows:
            click.echo(json_text(dict(zip(columns, row, strict=True)), ensure_ascii=False))
    elif fmt is OutputFormat.CSV:
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        click.echo(to_csv(columns, records), nl=False)
    else:
        click.echo(format_table(columns, [[cell(v) for v in row] for row in rows]))
