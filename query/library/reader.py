"""The query library's front door: one object per DuckDB connection, one method per read.

Each method returns the JSON object the API answers and ``-o json`` prints, so the CLI
(``--db``), the CLI (``--server``, through the API) and the API return the same rows.
"""

from __future__ import annotations

from typing import Any

import duckdb

from . import sessions, traces
from .filters import LogFilter, MetricFilter, SessionFilter, SpanFilter
from .sandbox import scope
from .sql import run_sql
from .usage import Prices, UsageFilter, session_usage, usage

Result = dict[str, Any]


class Reader:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        default_limit: int,
        timeout: float,
        max_rows: int,
        prices: Prices,
        project: str | None = None,
    ):
        """``project``: see only that project's rows (a query token's), in every method;
        ``prices``: the usage.prices setting (query.library.usage.parse_prices)."""
        self.con = con
        self.prices = prices
        self.default_limit = default_limit
        self.timeout = timeout
        self.max_rows = max_rows
        self.readable = scope(con, project) if project is not None else None

    def sessions(self, f: SessionFilter) -> Result:
        return {"sessions": sessions.list_sessions(self.con, f, self.default_limit)}

    def session(self, session_id: str) -> Result:
        found = sessions.get_session(self.con, session_id)
        return {"session": found, "usage": session_usage(self.con, session_id, self.prices)}

    def session_events(self, session_id: str) -> Result:
        return {"session_id": session_id, "events": sessions.session_timeline(self.con, session_id)}

    def session_spans(self, session_id: str, f: SpanFilter) -> Result:
        sessions.resolve_session(self.con, session_id)
        return {"session_id": session_id, "spans": traces.session_spans(self.con, session_id, f)}

    def session_logs(self, session_id: str, f: LogFilter) -> Result:
        sessions.resolve_session(self.con, session_id)
        return {"session_id": session_id, "logs": sessions.session_logs(self.con, session_id, f)}

    def session_metrics(self, session_id: str, f: MetricFilter) -> Result:
        sessions.resolve_session(self.con, session_id)
        points = sessions.session_metrics(self.con, session_id, f, self.default_limit)
        return {"session_id": session_id, "metrics": points}

    def traces(self, f: SpanFilter) -> Result:
        return {"spans": traces.search_spans(self.con, f, self.default_limit)}

    def trace(self, trace_id: str) -> Result:
        return {"spans": traces.get_trace(self.con, trace_id)}

    def rooms(self) -> Result:
        return {"rooms": sessions.list_rooms(self.con)}

    def usage(self, f: UsageFilter) -> Result:
        return usage(self.con, f, self.prices, self.default_limit)

    def sql(self, text: str) -> Result:
        return run_sql(
            self.con, text, timeout=self.timeout, max_rows=self.max_rows, readable=self.readable
        )

    def close(self) -> None:
        self.con.close()
