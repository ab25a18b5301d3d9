"""How a read command prints a paged list (SPEC 8), the same through ``--db`` and ``--server``.

The rules (the commands' ``--limit`` help and the README's command tour say the same):

- ``-o table``: without ``--limit``, the first page (``query.default_limit`` records), and when
  more remain a line on stderr saying how to see them; with ``--limit N``, the first N records.
- ``-o json``: one object, the records and ``next`` (the cursor after the last one printed, or
  null): without ``--limit`` the first page, with ``--limit N`` the first N records.
- ``-o jsonl`` and ``-o csv``: every record (``--limit N``: the first N), written page by
  page as they are read, so memory stays bounded however long the list (query.cli.streamed).

Pages are read through the source with the list's own filter, ``limit`` (the page size) and
``cursor`` (the previous page's ``next``); a page is at most :data:`MAX_PAGE` records.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import click

from ..library.filters import MAX_PAGE
from ..library.values import json_text
from .output import Column, OutputFormat, emit, flat
from .streamed import release_freed_memory

Result = dict[str, Any]
# fetch(limit, cursor) -> one page: the result object of the list ({"spans": [...], "next": ...}).
Fetch = Callable[[int | None, str | None], Result]
# Records a streamed page holds (-o jsonl/csv): big enough that the pages of a million-span
# session are few, small enough that one page's records take tens of megabytes at most.
STREAM_PAGE = 5_000

LIMIT_HELP = (
    "At most N records. Without it: table and json print the first page"
    " (query.default_limit records), jsonl and csv print every record, page by page."
)


def paged(read: Callable[[Any], Result], f: Any) -> Fetch:
    """The pages of ``read(filter)`` (a source's list method): ``f`` with a page's ``limit``
    and ``cursor``."""
    return lambda limit, cursor: read(replace(f, limit=limit, cursor=cursor))


def pages(fetch: Fetch, limit: int | None, size: int | None) -> Iterator[Result]:
    """The pages of a list, in order, until ``limit`` records (None: all) were read; ``size``:
    the page size (None: the reader's default)."""
    cursor: str | None = None
    left = limit
    while True:
        want = size if left is None else min(left, size or MAX_PAGE)
        page = fetch(want, cursor)
        cursor = page.get("next")
        yield page
        del page  # not held while the next page is read
        if left is not None:
            left -= want
        if cursor is None or (left is not None and left <= 0):
            return


def emit_list(
    output: OutputFormat,
    fetch: Fetch,
    key: str,
    columns: Sequence[Column],
    limit: int | None,
    table_text: Callable[[list[dict[str, Any]]], str] | None = None,
    fields: Sequence[str] = (),
) -> None:
    """Print a paged list by the rules above; ``key``: the records' key in a page."""
    if output in (OutputFormat.JSONL, OutputFormat.CSV):
        stream_records(output, _records(pages(fetch, limit, STREAM_PAGE), key), None, fields)
        return
    if limit is None:
        result = fetch(None, None)
    else:  # the first ``limit`` records, read in pages of at most MAX_PAGE
        result, records = {}, []
        for page in pages(fetch, limit, MAX_PAGE):
            result = page
            records.extend(page[key])
        result = {**result, key: records}
    emit(output, result, key, columns, table_text, fields)
    if output is OutputFormat.TABLE and result.get("next") is not None:
        what = key.replace("_", " ")
        click.echo(
            f"({len(result[key])} shown, more {what} remain: --limit N prints N,"
            " -o jsonl or -o csv prints them all)",
            err=True,
        )


def _records(found: Iterator[Result], key: str) -> Iterator[list[dict[str, Any]]]:
    """Each page's records, the page not held while the next is read."""
    for page in found:
        records = page.get(key) or []
        del page
        yield records
        del records


def stream_records(
    output: OutputFormat,
    batches: Iterator[list[dict[str, Any]]],
    limit: int | None,
    fields: Sequence[str] = (),
) -> None:
    """jsonl: one record a line; csv: the header (the first record's keys, else ``fields``),
    then the rows; a batch of records at a time, flushed after each; ``limit``: at most that
    many records (None: all)."""
    writer = csv.writer(sys.stdout, lineterminator="\n") if output is OutputFormat.CSV else None
    header: list[str] | None = None
    left = limit
    for records in batches:
        if left is not None:
            records = records[:left]
            left -= len(records)
        if writer is not None:
            if header is None and records:
                header = list(records[0])
                writer.writerow(header)
            for r in records:
                writer.writerow([flat(r.get(h)) for h in header or ()])
        else:
            for r in records:
                sys.stdout.write(json_text(r, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        del records
        release_freed_memory()
        if left == 0:
            break
    if writer is not None and header is None and fields:
        writer.writerow(list(fields))
