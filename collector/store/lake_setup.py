"""What a replica does to a lake when it opens it, before it writes: make the tables (once per
lake), bring an older lake to this roomscope's schema version, give the tables that never
held a row their statistics (lake_layout.seed_statistics) and the sorted tables their insert
and file options (lake_layout.WRITE_OPTIONS).

Replicas starting together may race: the loser of a conflict finds the tables made, and a
replica that loses the statistics' commit leaves them to the one that won.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import duckdb

from ..errors import StoreError
from .faults import is_conflict
from .lake_connect import LAKE
from .lake_layout import (
    META,
    seed_statistics,
    table_statements,
    tuning_statements,
    upgrade,
    write_option_statements,
)
from .schema import SCHEMA_VERSION

log = logging.getLogger("roomscope.store")

# A transaction on the lake's writer connection (DuckLakeStore._transaction).
Transaction = Callable[[], contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]]


def create_tables(transaction: Transaction, location: str, retries: int) -> None:
    """The tables, once per lake, or the upgrade of a lake made by an older roomscope; raises
    StoreError for a lake newer than this roomscope, or after ``retries`` conflicts."""
    for attempt in range(retries):
        try:
            with transaction() as con:
                row = (
                    con.execute(
                        f"SELECT value FROM {LAKE}.main.{META} WHERE key = 'schema_version'"
                    ).fetchone()
                    if _has_meta(con)
                    else None
                )
                if row is not None:
                    if int(row[0]) > SCHEMA_VERSION:
                        raise StoreError(
                            f"lake {location} has schema version {row[0]}, newer than this"
                            f" roomscope ({SCHEMA_VERSION}); upgrade roomscope"
                        )
                    upgrade(con, int(row[0]))
                    return
                for statement in table_statements():
                    con.execute(statement)
                for statement in tuning_statements():
                    con.execute(statement)
                con.execute(
                    f"INSERT INTO {META} VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
                )
            return
        except duckdb.Error as exc:
            if not is_conflict(exc) and "already exists" not in str(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise StoreError(f"cannot create the tables of lake {location}: conflicts")


def give_statistics(transaction: Transaction) -> None:
    """lake_layout.seed_statistics, once the tables exist; a conflict with a replica doing the
    same leaves it to that one (the statistics only speed reads up)."""
    try:
        with transaction() as con:
            seeded = seed_statistics(con, LAKE)
    except duckdb.Error as exc:
        if not is_conflict(exc):
            raise
        return
    if seeded:
        log.info("lake: statistics made for the empty tables %s", ", ".join(seeded))


def tune_writes(transaction: Transaction) -> None:
    """lake_layout.WRITE_OPTIONS on the sorted tables, where the lake lacks them (a new lake,
    or one made by an older roomscope); a conflict leaves them to the replica that won it,
    and a replica that finds them set writes nothing."""
    try:
        with transaction() as con:
            statements = write_option_statements(con, LAKE)
            for statement in statements:
                con.execute(statement)
    except duckdb.Error as exc:
        if not is_conflict(exc):
            raise
        return
    if statements:
        log.info("lake: the sorted tables' write options set (%d)", len(statements))


def _has_meta(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
        [LAKE, META],
    ).fetchone()
    return bool(row and row[0])
