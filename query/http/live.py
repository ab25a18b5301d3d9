"""Live tails for the console (server-sent events): one poller for all subscribers.

The hub polls the store about twice a second with a receive-time cursor (``received_at``), only
while someone listens, and fans the new spans and log records out to every subscriber whose
project/room/session matches. With auth on, a subscriber's project is the one of the query token
that opened the stream (never a client parameter), so one poller serves every project and each
stream holds only its own project's rows. A short lookback window (deduplicated) covers rows
received just before the cursor but committed just after a poll.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
from starlette.concurrency import run_in_threadpool

from ..library.records import COLUMNS, fetch_records, select_list
from ..library.values import json_text

POLL_SECONDS = 0.5
LOOKBACK_NS = 2_000_000_000
HEARTBEAT_SECONDS = 15.0
MAX_ROWS = 2000  # per table per poll
QUEUE_ROWS = 5000
TABLES = (
    ("span", "spans", ("trace_id", "span_id")),
    ("log", "logs", ("time", "body", "trace_id", "span_id", "session_id", "service_name")),
)  # per subscriber; a slower reader loses the oldest rows


@dataclass(eq=False)
class Subscriber:
    room: str | None
    session: str | None
    project: str | None = None  # None: every project (auth off)
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_ROWS)
    )

    def wants(self, row: dict[str, Any]) -> bool:
        if self.project is not None and row.get("project") != self.project:
            return False
        if self.session is not None and row.get("session_id") != self.session:
            return False
        return self.room is None or row.get("room") == self.room

    def put(self, kind: str, row: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait((kind, row))


class LiveHub:
    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        accepting: Callable[[], bool],
        poll_seconds: float = POLL_SECONDS,
    ):
        self.cursor = cursor
        self.accepting = accepting
        self.poll_seconds = poll_seconds
        self.subscribers: set[Subscriber] = set()
        self.start_ns = 0
        self.cursors: dict[str, int] = {}
        self.seen: dict[str, dict[tuple[Any, ...], int]] = {}
        self.polls = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        return not self.accepting()

    def subscribe(
        self, room: str | None, session: str | None, project: str | None = None
    ) -> Subscriber:
        sub = Subscriber(room, session, project)
        self.subscribers.add(sub)
        if self._task is None or self._task.done():
            self.start_ns = time.time_ns()
            self.cursors.clear()
            self.seen.clear()
            self._task = asyncio.create_task(self._run(), name="roomscope-live")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers and self._task is not None:
            self._task.cancel()  # nobody listens: stop polling now (and before the loop closes)
            self._task = None

    async def _run(self) -> None:
        while self.subscribers and not self.closing:
            try:
                rows = await run_in_threadpool(self._poll)
            except Exception:  # store busy or closing: try again next tick
                rows = []
            self.polls += 1
            for kind, row in rows:
                for sub in list(self.subscribers):
                    if sub.wants(row):
                        sub.put(kind, row)
            await asyncio.sleep(self.poll_seconds)

    def _poll(self) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        cur = self.cursor()
        try:
            for kind, table, key_cols in TABLES:
                out.extend((kind, row) for row in self._new_rows(cur, table, key_cols))
        finally:
            cur.close()
        out.sort(key=lambda kr: kr[1].get("start_time") or kr[1].get("time") or "")
        return out

    def _new_rows(self, cur: Any, table: str, key_cols: tuple[str, ...]) -> list[dict[str, Any]]:
        """Rows past the table's cursor, plus any committed late inside the lookback window.

        Late rows are looked for only when the window holds more rows than were sent from it
        (one count), so a busy store is never re-read in full.
        """
        cursor = self.cursors.get(table, self.start_ns)
        seen = self.seen.setdefault(table, {})
        floor = max(self.start_ns, cursor - LOOKBACK_NS)
        columns = select_list(table)
        if "project" not in COLUMNS[table]:  # subscribers filter on it: always select it
            columns += ", project"
        select = f"SELECT epoch_ns(received_at) AS _rx, {columns} FROM {table}"
        rows = fetch_records(
            cur,
            f"{select} WHERE received_at > make_timestamp_ns(?) ORDER BY received_at LIMIT ?",
            [cursor, MAX_ROWS],
        )
        (in_window,) = cur.execute(
            f"SELECT count(*) FROM {table} WHERE received_at > make_timestamp_ns(?)"
            " AND received_at <= make_timestamp_ns(?)",
            [floor, cursor],
        ).fetchone()
        if in_window > sum(1 for rx in seen.values() if rx > floor):
            late = fetch_records(
                cur,
                f"{select} WHERE received_at > make_timestamp_ns(?)"
                " AND received_at <= make_timestamp_ns(?)",
                [floor, cursor],
            )
            rows = late + rows
        fresh = []
        for row in rows:
            rx = row.pop("_rx")
            key = (rx, *(json.dumps(row.get(c)) for c in key_cols))
            if key in seen:
                continue
            seen[key] = rx
            cursor = max(cursor, rx)
            fresh.append(row)
        self.cursors[table] = cursor
        floor = cursor - LOOKBACK_NS
        self.seen[table] = {k: rx for k, rx in seen.items() if rx > floor}
        return fresh

    async def stream(
        self, room: str | None, session: str | None, project: str | None = None
    ) -> AsyncIterator[str]:
        """The SSE body: ``ready``, then ``span``/``log`` events of ``project`` (None: all);
        ends when the collector stops."""
        sub = self.subscribe(room, session, project)
        try:
            yield _event("ready", {"room": room, "session": session})
            last = time.monotonic()
            while not self.closing:
                try:
                    kind, row = await asyncio.wait_for(sub.queue.get(), self.poll_seconds)
                except TimeoutError:
                    if time.monotonic() - last > HEARTBEAT_SECONDS:
                        last = time.monotonic()
                        yield ": heartbeat\n\n"
                    continue
                last = time.monotonic()
                yield _event(kind, row)
        finally:
            self.unsubscribe(sub)


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json_text(data, separators=(',', ':'))}\n\n"
