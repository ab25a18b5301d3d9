"""The layout of a new store file: every table and view at SCHEMA_VERSION, made from today's
definitions (schema.py, span_archive.py). Files of older versions get there by the frozen steps
of migrations.py instead; tests/test_migrations.py checks that both routes end in the same
layout."""

from __future__ import annotations

from .outbox import ENDPOINTS_SQL, OUTBOX_SQL
from .schema import (
    ATTRIBUTE_KEYS_SQL,
    RESOURCE_ROWS_SQL,
    SPAN_CLUSTERS_SQL,
    TRACE_INDEX_SQL,
    create_table_sql,
    logs_view_sql,
)
from .span_archive import ARCHIVE_SQL, SPAN_ROWS_SQL, SPANS_VIEW_SQL


def latest_sql() -> list[str]:
    """The statements that make a new file's tables and views at SCHEMA_VERSION, in the order
    the migrations made them (tests/test_migrations.py checks that an old file, migrated,
    ends with the same layout)."""
    return [
        *(create_table_sql(t) for t in ("metric_points", "sessions", "session_events")),
        ATTRIBUTE_KEYS_SQL,
        *(create_table_sql(t) for t in ("resources", "attribute_keysets", "span_data")),
        TRACE_INDEX_SQL,
        SPAN_CLUSTERS_SQL,
        ARCHIVE_SQL,
        SPAN_ROWS_SQL,
        SPANS_VIEW_SQL,
        create_table_sql("log_data"),
        logs_view_sql(),
        OUTBOX_SQL,
        ENDPOINTS_SQL,
        RESOURCE_ROWS_SQL,
    ]
