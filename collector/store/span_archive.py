"""Settled spans, stored smaller: ``span_archive`` and the ``span_rows`` view over both tables.

New spans are appended to ``span_data``, whose attribute values are one ``VARCHAR[]`` per span
(DuckDB appends a list faster than many columns, and the writer's appends bound ingest). The
compaction job (maintenance.compaction) moves each settled range of start times into
``span_archive``, sorted by room, with the values as one column per keyset position instead:
``v1`` … ``v16``, and ``attribute_rest`` for positions past 16. Each position's column then
holds one kind of value (a status, a tool name, a user id), which DuckDB's dictionary and FSST
compression store in 8.3 bytes a span against 18.6 for the list (10 M spans, 10 attributes
each); a search reads only the position it compares, not the whole list.

Reads go through ``span_rows``: the two tables as one, each row with the other table's
columns NULL. A search on a value at position ``n`` compares :func:`value_at`,
``coalesce(attribute_values[n], vn)``, which the filter pushed into each branch of the union
makes the one column there: counting one value over 10 M spans took 49 ms instead of 240 ms
for the lists. ``spans`` (SPEC 4) is built on ``span_rows`` with :data:`SPAN_ATTRIBUTES`.
"""

from __future__ import annotations

import re
from typing import Any

from .schema import TABLES, create_table_sql, spans_select_sql, spans_view_sql

ARCHIVE = "span_archive"
SPAN_ROWS = "span_rows"
# How each range of the archive is sorted (maintenance.compaction, maintenance.archive_merge):
# by room, so that a room's spans fill few row groups; then by session and trace, so that the
# values a session's spans share (its resources, receive times, trace ids, services) lie side
# by side and compress (10 M spans: 5.7 bytes a span less than by room and start time alone);
# a session's traces in the order of their first start (a session's pages' order): the row
# groups of a big session then each hold a stretch of its time, which a search's windows of
# start time skip by their zone maps (burst shape, query 1 cold: 54 -> 49 ms; the size is
# the same within half a byte a span).
# The names are span_archive's columns; ARCHIVE_SELECT gives its expressions the same names.
TRACE_START = "min(start_time) OVER (PARTITION BY trace_hi, trace_lo, trace_id)"
SORT_KEY = f"room, project, session_id, {TRACE_START}, trace_hi, trace_lo, trace_id, start_time"
# A range of start times [first, last) in epoch ns, on column ``c``; on the spans' start_time.
START_RANGE = "{c} >= make_timestamp_ns(?) AND {c} < make_timestamp_ns(?)"
SPAN_RANGE = START_RANGE.format(c="start_time")
POSITIONS = 16  # value columns; a keyset's further values go to attribute_rest
REST = "attribute_rest"
_VALUE_COLUMNS = [f"v{i}" for i in range(1, POSITIONS + 1)]


# The span id as a number: 8 bytes a span against 9.5 for 16 hex digits (which do not repeat,
# so DuckDB's string compression gains little); ``span_id`` keeps only an id that is not
# 16 lowercase hex digits (none that the decoder writes), and is NULL otherwise.
SPAN_KEY = "span_key"
_IS_HEX_ID = "regexp_full_match(span_id, '[0-9a-f]{16}')"
# The trace id as two numbers, its first and last 64 bits: a trace's spans lie side by side
# (SORT_KEY), so each number is one run of a trace, 2.2 bytes a span for both against 5.3 for
# 32 hex digits. ``trace_id`` keeps only an id that is not 32 lowercase hex digits. The two
# columns come last: version 9 of the schema added them to existing archives.
TRACE_HI, TRACE_LO = "trace_hi", "trace_lo"
_HEX_TRACE = "[0-9a-f]{32}"  # the hex trace ids kept as numbers (SQL and Python)
_IS_HEX_TRACE = f"regexp_full_match(trace_id, '{_HEX_TRACE}')"
_TRACE_HALVES = {
    TRACE_HI: f"CASE WHEN {_IS_HEX_TRACE} THEN ('0x' || trace_id[1:16])::UBIGINT END",
    TRACE_LO: f"CASE WHEN {_IS_HEX_TRACE} THEN ('0x' || trace_id[17:32])::UBIGINT END",
}
# span_archive's trace_id and span_id as span_rows shows them.
TRACE_ID_SQL = f"coalesce(trace_id, printf('%016x%016x', {TRACE_HI}, {TRACE_LO}))"
SPAN_ID_SQL = f"coalesce(span_id, printf('%016x', {SPAN_KEY}))"


def _number(text: str, whole: str | None = None) -> str:
    """SQL: hex ``text`` as a UBIGINT, else the hash of ``whole`` (default ``text``)."""
    return f"coalesce(TRY_CAST('0x' || {text} AS UBIGINT), hash({whole or text}))"


# span_rows' ids as numbers, for joins of many spans on ids (a parent and its children):
# ``trace_num`` is the trace id's last 64 bits, ``span_num`` the span id; an id that is not
# hex is hashed. An archived hex id is its stored number, so neither formats the hex text
# (TRACE_ID_SQL, SPAN_ID_SQL: ~130 ns a row each); a parent span id is compared as
# ``id_number(parent_span_id)``.
TRACE_NUM, SPAN_NUM = "trace_num", "span_num"
_HOT_NUMS = {TRACE_NUM: _number("trace_id[17:32]", "trace_id"), SPAN_NUM: _number("span_id")}
_ARCHIVED_NUMS = {
    TRACE_NUM: f"coalesce({TRACE_LO}, {_HOT_NUMS[TRACE_NUM]})",
    SPAN_NUM: f"coalesce({SPAN_KEY}, {_HOT_NUMS[SPAN_NUM]})",
}


def id_number(column: str) -> str:
    """SQL: a span id column (text) as span_rows' ``span_num`` has it."""
    return _number(column)


def _archive_columns() -> list[tuple[str, str]]:
    columns: list[tuple[str, str]] = []
    for name, sql_type in TABLES["span_data"]:
        if name == "attribute_values":
            columns += [(c, "VARCHAR") for c in _VALUE_COLUMNS] + [(REST, "VARCHAR[]")]
        elif name == "span_id":
            columns += [(SPAN_KEY, "UBIGINT"), (name, sql_type)]
        else:
            columns.append((name, sql_type))
    return [*columns, (TRACE_HI, "UBIGINT"), (TRACE_LO, "UBIGINT")]


ARCHIVE_COLUMNS = _archive_columns()
ARCHIVE_SQL = create_table_sql(ARCHIVE, ARCHIVE_COLUMNS)


def _archive_select() -> str:
    """span_archive's columns, in order, as expressions over a span_data row, each named as
    its column (so that an ORDER BY SORT_KEY sorts by the archive's values)."""
    exprs: dict[str, str] = {}
    for name, _ in TABLES["span_data"]:
        if name == "attribute_values":
            exprs |= {c: f"attribute_values[{i}]" for i, c in enumerate(_VALUE_COLUMNS, 1)}
            exprs[REST] = (
                f"CASE WHEN len(attribute_values) > {POSITIONS}"
                f" THEN attribute_values[{POSITIONS + 1}:] END"
            )
        elif name == "span_id":
            exprs[SPAN_KEY] = f"CASE WHEN {_IS_HEX_ID} THEN ('0x' || span_id)::UBIGINT END"
            exprs[name] = f"CASE WHEN NOT {_IS_HEX_ID} THEN span_id END"
        elif name == "trace_id":
            exprs[name] = f"CASE WHEN NOT {_IS_HEX_TRACE} THEN trace_id END"
        else:
            exprs[name] = name
    exprs |= _TRACE_HALVES
    assert list(exprs) == [name for name, _ in ARCHIVE_COLUMNS]
    return ", ".join(f"{sql} AS {name}" for name, sql in exprs.items())


# span_data's row → span_archive's columns (INSERT INTO span_archive SELECT … FROM span_data).
ARCHIVE_SELECT = _archive_select()


def _union_sql() -> str:
    hot, archived = [], []
    archived_as = {
        "attribute_values": "NULL::VARCHAR[] AS attribute_values",
        "trace_id": f"{TRACE_ID_SQL} AS trace_id",
        "span_id": f"{SPAN_ID_SQL} AS span_id",
    }
    for name, _ in TABLES["span_data"]:
        hot.append(name)
        archived.append(archived_as.get(name, name))
    hot += [f"NULL::VARCHAR AS {c}" for c in _VALUE_COLUMNS] + [f"NULL::VARCHAR[] AS {REST}"]
    archived += [*_VALUE_COLUMNS, REST]
    hot.append(f"NULL::UBIGINT AS {TRACE_HI}")  # for trace_ids_where
    archived.append(TRACE_HI)
    hot += [f"{sql} AS {name}" for name, sql in _HOT_NUMS.items()]
    archived += [f"{sql} AS {name}" for name, sql in _ARCHIVED_NUMS.items()]
    return (
        f"CREATE OR REPLACE VIEW {SPAN_ROWS} AS SELECT {', '.join(hot)} FROM span_data"
        f" UNION ALL SELECT {', '.join(archived)} FROM {ARCHIVE}"
    )


SPAN_ROWS_SQL = _union_sql()


def trace_ids_where(p: str, trace_ids: list[str]) -> tuple[str, list[Any]]:
    """A condition on span_rows (``p``: alias and dot, or "") that holds for the spans of
    these trace ids, and its parameters. An archived span's hex id is formatted from its two
    numbers (TRACE_ID_SQL, ~130 ns a span), so the archive's rows are first narrowed to those
    whose ``trace_hi`` is one of the ids' first halves (a number comparison DuckDB pushes into
    the scan); span_data's rows (``trace_hi`` NULL) compare their text as stored."""
    halves = sorted({int(t[:16], 16) for t in trace_ids if re.fullmatch(_HEX_TRACE, t)})
    narrowed = f"{p}{TRACE_HI} IS NULL"
    if halves:
        narrowed = f"({narrowed} OR {p}{TRACE_HI} IN ({', '.join(map(str, halves))}))"
    return f"{narrowed} AND list_contains(?, {p}trace_id)", [list(trace_ids)]


def _all_values(p: str) -> str:
    """A span_rows row's values as one list in keyset order (``p``: alias and dot, or ""):
    the archive's 16 columns, padded with NULLs, then the rest; index n is the n-th key's."""
    columns = ", ".join(f"{p}{c}" for c in _VALUE_COLUMNS)
    return (
        f"coalesce({p}attribute_values,"
        f" list_concat(list_value({columns}), coalesce({p}{REST}, [])))"
    )


# The values of a span_rows row ``s`` cut to its keyset ``k``'s length, for the attributes map.
SPAN_ATTRIBUTES = "map({k}.keys, " + _all_values("{s}.") + "[1:len({k}.keys)])"


def value_at(p: str, position: int) -> str:
    """SQL for the value at a keyset ``position`` (1-based) of a span_rows row (``p``: alias
    and dot, or "")."""
    own = f"{p}attribute_values[{int(position)}]"
    if position <= POSITIONS:
        return f"coalesce({own}, {p}v{int(position)})"
    return f"coalesce({own}, {p}{REST}[{int(position) - POSITIONS}])"


def value_of_key(p: str, keys_sql: str) -> str:
    """SQL for the value of the key at ``list_position(keys_sql, ?)`` (any keyset)."""
    return value_by_position(p, f"list_position({keys_sql}, ?)")


def value_by_position(p: str, position_sql: str) -> str:
    """SQL for the value at the 1-based position ``position_sql`` (SQL; NULL gives NULL) of a
    span_rows row, whatever its keyset."""
    return f"{_all_values(p)}[{position_sql}]"


# Ad-hoc SQL on ``spans`` at the speed of the stored columns (query.library.sql_rewrite):
# SPEC 4's columns as the view has them, then the layout behind ``attributes`` under names
# starting with LAYOUT_PREFIX: the keyset id, the values (list or columns, as span_rows has
# them) and the keyset's keys. An attribute lookup over these reads one value column instead
# of building every row's MAP (~2 µs a row).
LAYOUT_PREFIX = "__rs_"
_LAYOUT = [
    *(f"s.{c}" for c in ("attribute_keyset", "attribute_values", *_VALUE_COLUMNS, REST)),
    "k.keys",
]
LAYOUT_COLUMNS = [LAYOUT_PREFIX + c.split(".")[1] for c in _LAYOUT]
SPANS_WITH_LAYOUT_SQL = spans_select_sql(
    SPAN_ROWS,
    SPAN_ATTRIBUTES.format(k="k", s="s"),
    ", ".join(f"{c} AS {name}" for c, name in zip(_LAYOUT, LAYOUT_COLUMNS, strict=True)),
)


def keyset_of(p: str) -> str:
    """SQL for the keyset id of a row of :data:`SPANS_WITH_LAYOUT_SQL` (``p``: its alias, a
    dot and LAYOUT_PREFIX)."""
    return f"{p}attribute_keyset"


def keys_of(p: str) -> str:
    """SQL for the attribute keys of such a row (NULL: no keyset, a NULL ``attributes``)."""
    return f"{p}keys"


def values_of(p: str) -> str:
    """SQL for the attribute values of such a row, in its keys' order (``map_values``)."""
    return f"{_all_values(p)}[1:len({p}keys)]"


SPANS_VIEW_SQL = spans_view_sql(SPAN_ROWS, SPAN_ATTRIBUTES.format(k="k", s="s"))
