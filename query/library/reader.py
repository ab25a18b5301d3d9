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

from . import catalog, otlp_export, sessions, span_search, status, trace_rows, trace_search, traces
from .filters import MAX_PAGE, LogFilter, MetricFilter, PageFilter, SessionFilter, SpanFilter
from .paging import all_pages
from .sandbox import scope
from .session_stream import Relieve, stream_session_spans
from .sql import run_sql
from .usage import Prices, UsageFilter, session_usage, usage

Result = dict[str, Any]
FIRST_PAGE = PageFilter()  # the first page, of query.default_limit records


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

    def clock(self) -> int:
        """The reader's now (epoch ns)."""
        return self.now() if self.now is not None else time.time_ns()

    def ended_before(self) -> int:
        """Sessions last seen at or before this time (epoch ns) are ended: ``now - idle``."""
        return self.clock() - self.idle_ns

    # Every list is a page (SPEC 8): its records and ``next``, the cursor of the next page
    # (None after the last). A filter's ``limit`` is the page size (default: default_limit),
    # its ``cursor`` the previous page's ``next``.

    def sessions(self, f: SessionFilter) -> Result:
        page = sessions.list_sessions(
            self.con, f, self.default_limit, self.ended_before(), self.clock()
        )
        result: Result = {"sessions": page.records, "next": page.next}
        if f.count:
            result["total"] = sessions.count_sessions(self.con, f, self.ended_before())
        return result

    def session(self, session_id: str) -> Result:
        found = sessions.get_session(self.con, session_id, self.ended_before())
        return {"session": found, "usage": session_usage(self.con, session_id, self.prices)}

    def session_events(self, session_id: str, page: PageFilter = FIRST_PAGE) -> Result:
        found = sessions.session_timeline(
            self.con, session_id, self.ended_before(), page, self.default_limit
        )
        return {"session_id": session_id, "events": found.records, "next": found.next}

    def session_spans(self, session_id: str, f: SpanFilter) -> Result:
        page = traces.session_spans(self.con, session_id, f, self.default_limit)  # resolves it
        return {"session_id": session_id, "spans": page.records, "next": page.next}

    def session_spans_stream(
        self, session_id: str, f: SpanFilter, batch: int, relieve: Relieve | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Every span of :meth:`session_spans`' list (``f``'s filters), in its order, in lists
        of whole traces of about ``batch`` spans, each read once (query.library.session_stream)."""
        sessions.resolve_session(self.con, session_id)
        return stream_session_spans(self.con, session_id, f, batch, relieve)

    def session_logs(self, session_id: str, f: LogFilter) -> Result:
        page = sessions.session_logs(self.con, session_id, f, self.default_limit)  # resolves it
        return {"session_id": session_id, "logs": page.records, "next": page.next}

    def session_metrics(self, session_id: str, f: MetricFilter) -> Result:
        sessions.resolve_session(self.con, session_id)
        page = sessions.session_metrics(self.con, session_id, f, self.default_limit)
        return {"session_id": session_id, "metrics": page.records, "next": page.next}

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
        page = span_search.search_spans(self.con, f, self.default_limit)
        return {"spans": page.records, "next": page.next}

    def trace(self, trace_id: str) -> Result:
        return {"spans": traces.get_trace(self.con, trace_id)}

    def trace_search(self, f: SpanFilter, limit: int, per_trace: int) -> Result:
        """The newest traces with a matching span: root, extent, matching spans (Tempo)."""
        return {"traces": trace_search.search_traces(self.con, f, limit, per_trace)}

    def trace_rows(self, f: SpanFilter) -> Result:
        """A page of trace rows: the newest traces with a matching span, with root, duration,
        span and error counts and the matching spans (the console's search)."""
        page = trace_rows.trace_rows(self.con, f, self.default_limit)
        return {"traces": page.records, "next": page.next}

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

    def rooms(self, page: PageFilter = FIRST_PAGE) -> Result:
        found = sessions.list_rooms(self.con, self.ended_before(), page, self.default_limit)
        return {"rooms": found.records, "next": found.next}

    def usage(self, f: UsageFilter) -> Result:
        return usage(self.con, f, self.prices, self.default_limit)

    def status(self) -> Result:
        """Forwarding: per endpoint queued, sent, dropped, last error (query.library.status)."""
        return status.forwarding_status(self.con)

    def sql(self, text: str) -> Result:
        return run_sql(
            self.con, text, timeout=self.timeout, max_rows=self.max_rows, readable=self.readable
        )

    def close(self) -> None:
        self.con.close()


class SessionReads(Protocol):
    """What :func:`newest_session` reads: a :class:`Reader`, or the CLI's remote source."""

    def rooms(self, page: PageFilter = ...) -> Result: ...

    def sessions(self, f: SessionFilter) -> Result: ...


# How many sessions of a room newest_session reads, then reads again (the API's page size, then
# its largest), to find the chosen project's newest one among them.
NEWEST_SCAN = (100, MAX_PAGE)


def newest_session(
    src: SessionReads, room: str | None = None, project: str | None = None
) -> dict[str, Any] | None:
    """The session a command without a session id means (``--room``, ``--project``): the newest
    (latest start) of ``project`` in ``room``; no project given, of the project with the most
    recent activity in the room (or anywhere, without a room), so that a newer one-span session
    of another project does not hide the room's run. None: no such session.

    Both CLI sources (and the API behind ``--server``) answer it from the same reads, ``rooms``
    (every page: per project and room) then ``sessions``."""
    if project is None:
        rooms = all_pages(lambda c: _page(src.rooms(PageFilter(MAX_PAGE, c)), "rooms"))
        active = [r for r in rooms if room is None or r["room"] == room]
        if not active:
            return None
        # the most recently active; on a tie the first by room (a room without one last), project
        active.sort(key=lambda r: (r["room"] is None, r["room"] or "", r["project"]))
        project = max(active, key=lambda r: r["last_seen_at"] or "")["project"]
    for limit in NEWEST_SCAN:
        found = src.sessions(SessionFilter(room=room, limit=limit))["sessions"]
        mine = [s for s in found if s["project"] == project]
        if mine or len(found) < limit:
            return mine[0] if mine else None
    return None


def _page(result: Result, key: str) -> tuple[list[dict[str, Any]], str | None]:
    return result[key], result.get("next")
