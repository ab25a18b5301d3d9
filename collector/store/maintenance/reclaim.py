"""Giving free space back: rewrite the row groups stored at the end of the file into its holes.

DuckDB reuses the blocks that deletes free (a move out of ``span_data``, a merge's old copies,
retention), lowest block first, and gives back to the file system only the free blocks at the
end of the file, at a checkpoint. A move frees ~210 blocks of ``span_data`` per million spans,
and until appends refill them they are holes in the middle of the file: the 10 M-span
benchmark's file ended 6-14 % larger than its data (docs/performance.md "Giving space
back"). So when more than ``compaction.reclaim`` of the file is free, the compaction job
rewrites the row groups that have a block past the point where the data would end without
holes: one transaction copies their rows (in row id order, so each row group keeps its time or
room range and its zone maps) to the end of their table, which DuckDB writes into the lowest
free blocks, and deletes the old rows; the checkpoint after it frees their blocks, now at the
end, and shortens the file. The rows of a table with a primary key (the small resources,
sessions and keysets) go out to a temporary table and back instead, since a copy beside them
would collide with the key.

Readers see each row once, before or after; a failure rolls the transaction back. Row ids are
read inside the same transaction, and the copy and the delete use the same condition, so the
worst a wrong guess can do is rewrite rows that did not need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import duckdb

from ...errors import StoreError
from ..statements import rewrite_rows, transaction

# The database file's three headers before its first block (DuckDB's storage format).
HEADER_BYTES = 3 * 4096


def file_blocks(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """(total, used, free) blocks of the database file. Blocks a checkpoint cut off the end
    of the file are left out: opened again, DuckDB (1.5.5) counts them in its total and as
    free, so a file given back to 2,253 blocks showed 2,330, 77 of them free, and the job
    rewrote rows at every start."""
    total, used, free, size = con.execute(
        "SELECT total_blocks, used_blocks, free_blocks, block_size FROM pragma_database_size()"
    ).fetchone()
    (path,) = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    if path and os.path.isfile(path):
        in_file = (os.path.getsize(path) - HEADER_BYTES) // int(size)
        if 0 <= in_file < total:
            free, total = max(0, free - (total - in_file)), in_file
    return int(total), int(used), int(free)


def fragmented(blocks: tuple[int, int, int], share: float) -> bool:
    """Whether more than ``share`` of the file's blocks (``file_blocks``) are free (0: never)."""
    total, _, free = blocks
    return share > 0 and total > 0 and free > share * total


def stored_tables(con: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """Every table of the store's main schema, and whether it has a primary key or a unique
    column."""
    rows = con.execute(
        "SELECT t.table_name, count(c.constraint_type) > 0 FROM duckdb_tables() t"
        " LEFT JOIN duckdb_constraints() c ON c.table_oid = t.table_oid"
        " AND c.constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
        " WHERE t.database_name = current_database() AND t.schema_name = 'main'"
        " AND NOT t.temporary GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return {name: bool(keyed) for name, keyed in rows}


def tail_row_groups(con: duckdb.DuckDBPyConnection, table: str, limit: int) -> list[tuple]:
    """(last block, first row id, rows) of each row group of ``table`` with a block at or past
    ``limit``. A row group's row ids follow those of the row groups before it."""
    return con.execute(
        f"""
        WITH segments AS (SELECT * FROM pragma_storage_info('{table}')),
        groups AS (
            SELECT row_group_id,
                   sum(count) FILTER (WHERE column_id = 0 AND column_path = '[0]') AS rows,
                   max(greatest(block_id, coalesce(list_max(additional_block_ids), -1)))
                       FILTER (WHERE persistent) AS last_block
            FROM segments GROUP BY row_group_id
        ),
        placed AS (
            SELECT last_block, rows,
                   coalesce(sum(rows) OVER (ORDER BY row_group_id ROWS BETWEEN UNBOUNDED
                       PRECEDING AND 1 PRECEDING), 0) AS first_row
            FROM groups
        )
        SELECT last_block, first_row, rows FROM placed WHERE last_block >= ? ORDER BY first_row
        """,
        [limit],
    ).fetchall()


def past_end(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> list[tuple]:
    """(last block, table, first row id, rows) of each row group of ``tables`` with a block
    past the used size of the file (what reclaim_step moves)."""
    _, used, _ = file_blocks(con)
    return [
        (last, table, first, rows)
        for table in tables
        for last, first, rows in tail_row_groups(con, table, used)
    ]


def rows_past_end(con: duckdb.DuckDBPyConnection) -> int:
    """The rows of the row groups with a block past the used size."""
    return sum(rows for *_, rows in past_end(con, stored_tables(con)))


def reclaim_step(con: duckdb.DuckDBPyConnection, max_rows: int) -> int:
    """Rewrite the row groups with the last blocks of the file, about ``max_rows`` rows at most
    (whole row groups, the furthest first), in one transaction; returns the rows rewritten."""
    with transaction(con):
        tables = stored_tables(con)
        found = past_end(con, tables)
        chosen: dict[str, list[tuple[int, int]]] = {}
        planned = total = 0
        for _, table, first, rows in sorted(found, reverse=True):
            if planned and planned + rows > max_rows:
                break
            chosen.setdefault(table, []).append((first, rows))
            planned += rows
        for table, groups in chosen.items():
            where = " OR ".join(f"(rowid >= {a} AND rowid < {a + n})" for a, n in groups)
            rewrite = _rewrite_keyed if tables[table] else rewrite_rows
            total += rewrite(con, table, where)
    return total


def keyed_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """The tables with a key and their rows, smallest first (:func:`reclaim_keyed`)."""
    keyed = [t for t, has_key in stored_tables(con).items() if has_key]
    return sorted(
        ((t, con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in keyed),
        key=lambda tn: (tn[1], tn[0]),
    )


def reclaim_keyed(con: duckdb.DuckDBPyConnection, tables: list[str]) -> int:
    """Rewrite ``tables`` (tables with a key) whole, in one transaction; returns the rows.

    For when no row is past the used size and the file is still fragmented: a table's index
    is not rows (pragma_storage_info shows none of its blocks), and an index written while the
    file grew (the resources of the first minutes, say) stays at the end of the file for as
    long as its table does not change, holding every free block below it in the file (307 of
    2,525 blocks after a 10 M-span build). Rewritten, a table's index goes into the lowest free
    blocks at the next checkpoint, which then shortens the file (66.2 -> 59.2 bytes a span)."""
    with transaction(con):
        return sum(_rewrite_keyed(con, table, "TRUE") for table in tables)


def _rewrite_keyed(con: duckdb.DuckDBPyConnection, table: str, where: str) -> int:
    """rewrite_rows for a table with a key (small: resources, sessions, keysets): the rows go
    to a temporary table, are deleted, and come back, since a copy beside them would collide
    with the key."""
    temp = "_roomscope_reclaim"  # dropped with the transaction if it fails
    con.execute(f"CREATE TEMP TABLE {temp} AS SELECT * FROM {table} WHERE {where} ORDER BY rowid")
    (deleted,) = con.execute(f"DELETE FROM {table} WHERE {where}").fetchone()
    (copied,) = con.execute(f"INSERT INTO {table} SELECT * FROM {temp}").fetchone()
    con.execute(f"DROP TABLE {temp}")
    if deleted != copied:  # cannot happen: rolled back rather than keep two copies
        raise StoreError(f"rewriting {table}: copied {copied} rows but deleted {deleted}")
    return int(copied)
