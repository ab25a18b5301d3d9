"""The query library's front door: one object per DuckDB connection, one method per read.

Each method returns the JSON object the API answers and ``-o json`` prints, so the CLI
(``--db``), the CLI (``--server``, through the API) and the API return the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import duckdb

from collector.tagging import Tagger

from . import catalog, otlp_export, sessions, trace_search, traces
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
        idle_timeout: float,
        prices: Prices,
        project: str | None = None,
        now: Callable[[], int] | None = None,
    ):
        """``idle_timeout`` (seconds, ``sessions.idle_timeout``): a session whose last record
        is that old reads as ended (SPEC 3), measured from ``now()`` (epoch ns; default the
        wall clock). ``project``: see only that project's rows (a query token's), in every
        method.
        ``prices``: the usage.prices setting (query.library.usage.parse_prices)."""
        self.con = con
        self.prices = prices
        self.default_limit = default_limit
        self.timeout = timeout
        self.max_rows = max_rows
        self.idle_ns = int(idle_timeout * 1e9)
        self.now = now
        self.readable = scope(con, project) if project is not None else None

    def ended_before(self) -> int:
        """Sessions last seen at or before this time (epoch ns) are ended: ``now - idle``."""
        now = self.now() if self.now is not None else time.time_ns()
        return now - self.idle_ns

    def sessions(self, f: SessionFilter) -> Result:
        found = sessions.list_sessions(self.con, f, self.default_limit, self.ended_before())
        return {"sessions": found}

    def session(self, session_id: str) -> Result:
        found = sessions.get_session(self.con, session_id, self.ended_before())
        return {"session": found, "usage": session_usage(self.con, session_id, self.prices)}

    def session_events(self, session_id: str) -> Result:
        events = sessions.session_timeline(self.con, session_id, self.ended_before())
        return {"session_id": session_id, "events": events}

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

    def export_session(
        self, session_id: str, fmt: str, tagger: Tagger, table: str = "spans"
    ) -> Iterator[bytes]:
        """The session as OTLP/JSON lines, length-prefixed OTLP protobuf, or (``parquet``) one
        parquet file of ``table``, in chunks (query.library.otlp_export)."""
        otlp_export.check_format(fmt)
        sessions.resolve_session(self.con, session_id)
        if fmt == "parquet":
            return otlp_export.export_parquet(self.con, session_id, otlp_export.check_table(table))
        return otlp_export.export_otlp(self.con, session_id, fmt, tagger)

    def traces(self, f: SpanFilter) -> Result:
        return {"spans": traces.search_spans(self.con, f, self.default_limit)}

    def trace(self, trace_id: str) -> Result:
        return {"spans": traces.get_trace(self.con, trace_id)}

    def trace_search(self, f: SpanFilter, limit: int, per_trace: int) -> Result:
        """The newest traces with a matching span: root, extent, matching spans (Tempo)."""
        return {"traces": trace_search.search_traces(self.con, f, limit, per_trace)}

    def full_traces(self, f: SpanFilter, limit: int) -> Result:
        """The newest traces with a matching span, all spans of each (Jaeger)."""
        return {"traces": trace_search.find_full_traces(self.con, f, limit)}

    def services(self, span: catalog.Range = None) -> Result:
        return {"services": catalog.services(self.con, span)}

    def operations(self, service: str, span: catalog.Range = None) -> Result:
        return {"operations": catalog.operations(self.con, service, span)}

    def tag_names(self, span: catalog.Range = None) -> Result:
        return {"scopes": catalog.tag_names(self.con, span)}

    def tag_values(self, scope: str, name: str, span: catalog.Range = None) -> Result:
        return {"values": catalog.tag_values(self.con, scope, name, span)}

    def dependencies(self, start_ns: int, end_ns: int) -> Result:
        return {"dependencies": catalog.dependencies(self.con, start_ns, end_ns)}

    def rooms(self) -> Result:
        return {"rooms": sessions.list_rooms(self.con, self.ended_before())}

    def usage(self, f: UsageFilter) -> Result:
        return usage(self.con, f, self.prices, self.default_limit)

    def sql(self, text: str) -> Result:
        return run_sql(
            self.con, text, timeout=self.timeout, max_rows=self.max_rows, readable=self.readable
        )

    def close(self) -> None:
        self.con.close()


class SessionReads(Protocol):
    """What :func:`newest_session` reads: a :class:`Reader`, or the CLI's remote source."""

    def rooms(self) -> Result: ...

    def sessions(self, f: SessionFilter) -> Result: ...


# How many sessions of a room newest_session reads, then reads again (the API's page size, then
# its largest), to find the chosen project's newest one among them.
NEWEST_SCAN = (100, 10_000)


def newest_session(
    src: SessionReads, room: str | None = None, project: str | None = None
) -> dict[str, Any] | None:
    """The session a command without a session id means (``--room``, ``--project``): the newest
    (latest start) of ``project`` in ``room``; no project given, of the project with the most
    recent activity in the room (or anywhere, without a room), so that a newer one-span session
    of another project does not hide the room's run. None: no such session.

    Both CLI sources (and the API behind ``--server``) answer it from the same reads, ``rooms``
    (per project and room, most recently active first) then ``sessions``."""
    if project is None:
        active = [r for r in src.rooms()["rooms"] if room is None or r["room"] == room]
        if not active:
            return None
        project = active[0]["project"]
    for limit in NEWEST_SCAN:
        found = src.sessions(SessionFilter(room=room, limit=limit))["sessions"]
        mine = [s for s in found if s["project"] == project]
        if mine or len(found) < limit:
            return mine[0] if mine else None
    return None
