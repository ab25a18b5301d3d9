"""Statements the DuckDB store and its maintenance jobs share: transactions and row rewrites."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import duckdb

from ..errors import StoreError


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT on ``con``; any exception rolls back and propagates."""
    con.begin()
    try:
        yield con
        con.commit()
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.rollback()
        raise


def rewrite_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    where: str,
    params: Sequence[object] = (),
    order: str = "rowid",
) -> int:
    """Copy the rows of ``table`` that match ``where`` to its end, in ``order``, and delete the
    old ones (those of a row id below the end before the copy), inside the caller's transaction
    (a merge piece, a reclaim step); returns how many. Raises StoreError when the copy and the
    delete disagree, so that the transaction rolls back rather than keep two copies."""
    (end,) = con.execute(f"SELECT coalesce(max(rowid) + 1, 0) FROM {table}").fetchone()
    (copied,) = con.execute(
        f"INSERT INTO {table} SELECT * FROM {table} WHERE {where} ORDER BY {order}", params
    ).fetchone()
    (deleted,) = con.execute(
        f"DELETE FROM {table} WHERE ({where}) AND rowid < ?", [*params, end]
    ).fetchone()
    if deleted != copied:  # cannot happen
        raise StoreError(f"rewriting {table}: copied {copied} rows but deleted {deleted}")
    return int(copied)
