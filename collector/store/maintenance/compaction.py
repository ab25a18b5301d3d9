"""Compaction: move settled spans into ``span_archive``, sorted by room and stored smaller.

Spans arrive in time order, so each row group of ``span_data`` holds every room's spans of its
time, and a search by room (``traces --room R``) reads every row group of the store. Once
``compaction.rows`` spans older than ``compaction.after`` have gathered past the last compacted
range, the background job moves the oldest such range of start times, cut at a second
boundary, in one transaction on the writer's connection: an ``INSERT INTO span_archive …
SELECT … ORDER BY`` span_archive.SORT_KEY (room first) of the range's spans (attribute
values one column per position, collector.store.span_archive), then a ``DELETE`` of them
from span_data, and a row in ``span_clusters`` that records the range. Afterwards each
room's spans of the range fill one or two row groups, whose zone maps let DuckDB skip every
other row group for a room condition (searches; the reads of a session and of a trace add the
room they know).

The move is one transaction, so a reader sees every span once, before or after it; a crash
rolls it back and the job does the range again. Writes wait behind it (~5–7 s per million
spans on this 2-core machine, docs/performance.md "Compaction: settled spans sorted by room"),
so ranges are cut at whole seconds (a busy minute is millions of spans), and the job waits
while ingest needs the writer (``busy``, Writer.busy: the queue filling, requests refused, or
ingest commits taking over a quarter of the writer's time): at such rates the spans stay in
span_data until the rate drops.
Spans that arrive for an already compacted range (long spans, which are sent when they end;
clock skew; an import of old data) move with the next chunk, and settled spans that waited
``compaction.wait`` for a range's worth move as a smaller range that the next move takes back
(moves.py: what a move takes, and the move). Only the time order of the newest data is kept,
which the searches' newest-first windows rely on.

After its moves, the job merges ranges of the archive into bigger ones, sorted by room again
(``compaction.merge``, ``compaction.levels``; archive_merge.py), piece by piece through
the writer like the moves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import duckdb

from ..interface import Busy
from .archive_merge import Merge, Piece, finish_merge, merge_piece, next_merge, pieces
from .moves import Chunk, compact, next_chunk
from .periodic import Periodic, Run
from .reclaim import (
    file_blocks,
    fragmented,
    keyed_tables,
    reclaim_keyed,
    reclaim_step,
    rows_past_end,
)

log = logging.getLogger("roomscope.compaction")

BUSY_POLL = 1.0  # seconds between looks at whether ingest still needs the writer


def compact_all(
    store: Any, rows: int, after_ns: int, now_ns: int | None = None, wait_ns: int = 0
) -> int:
    """Every chunk that is due, one transaction each, on ``store`` (a DuckDBStore nobody else
    writes: tests); returns the spans moved."""
    moved = 0
    now = time.time_ns() if now_ns is None else now_ns
    while (chunk := next_chunk(store.con, now, rows, after_ns, None, wait_ns)) is not None:
        moved += _on_all_cores(compact, chunk, now)(store)
        store.checkpoint()
    return moved


class Compaction(Periodic):
    """The background job: every ``interval`` seconds, compact each due chunk through the
    writer (one writer task per chunk, then a checkpoint that frees the old row groups)."""

    name = "compaction"

    def __init__(
        self,
        run: Run,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        *,
        rows: int,
        after: float,
        interval: float,
        wait: float = 0.0,
        max_age: float,
        merge: int,
        levels: int,
        reclaim: float,
        busy: Busy | None = None,
    ):
        super().__init__(run, interval, enabled=rows > 0)
        self.busy = busy  # Writer.busy: while ingest needs the writer, compaction waits
        self.cursor = cursor  # DuckDBStore.cursor: plans are read beside the writer
        self.rows = rows
        self.after_ns = int(after * 1e9)
        self.wait_ns = int(wait * 1e9)  # moves.py: settled spans wait for a range's worth
        self.max_age_ns = int(max_age * 1e9)  # retention's: older spans are not worth a move
        self.merge = merge  # archive_merge.py: ranges per merge, and the highest level
        self.levels = levels
        self.reclaim = reclaim  # reclaim.py: the free share of the file that is too much
        # The keyed tables rewritten for their indexes (reclaim_keyed) while the file had
        # this many blocks: each is rewritten once for a file of one size.
        self._keyed: tuple[int, set[str]] = (-1, set())
        self._stuck_at = -1  # the file's blocks when a step's rows came back to its end
        self.stats.update(chunks=0, spans=0, merges=0, merged=0, reclaimed=0)

    def _read(self, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """``fn`` on a cursor of its own, closed before the writer acts on what it planned: a
        DuckDB cursor keeps its last query's transaction open, and while one older than a move
        or a merge piece is open, checkpoints cannot free the row groups it deleted (the file
        then grew by every merged span)."""
        con = self.cursor()
        try:
            return fn(con)
        finally:
            con.close()

    def _now(self, now_ns: int | None) -> tuple[int, int | None]:
        """The time (``now_ns``, or the clock's) and retention's cutoff then (None: keeps all)."""
        now = time.time_ns() if now_ns is None else now_ns
        return now, now - self.max_age_ns if self.max_age_ns > 0 else None

    def run_once(self, now_ns: int | None = None) -> int:
        moved = self._move_due(now_ns, drain=True)
        while not self.stopping and (moved_meanwhile := self._merge_once(now_ns)) is not None:
            moved += moved_meanwhile
        self._reclaim()
        self._finished(spans=moved)
        return moved

    def _ingest_first(self) -> bool:
        """Wait while ingest needs the writer (``busy``); False when the job is stopping.
        Compaction only makes reads faster: where ingest has little of the writer to spare, a
        move would cost exporters latency and refused requests, so the spans stay in span_data
        until the rate drops (then they are moved, oldest first)."""
        while self.busy is not None and not self.stopping and self.busy():
            self._stop.wait(BUSY_POLL)
        return not self.stopping

    def _step(self, fn: Callable[..., int], *args: Any) -> tuple[int, float]:
        """``fn(con, *args)`` on the writer with DuckDB on every core (a move, a merge piece, a
        reclaim step), then a checkpoint as a task of its own, so that ingest commits can go
        between the two; returns fn's count and the seconds both took."""
        started = time.perf_counter()
        n = self.run(_on_all_cores(fn, *args)).result()
        self.run(lambda store: store.checkpoint()).result()
        return n, time.perf_counter() - started

    def _reclaim(self, steps: int = 8) -> None:
        """While too much of the file is free, rewrite the row groups at its end into the free
        blocks lower down (reclaim.py), ~``rows`` rows a step, resting after each as
        long as it took, at most ``steps`` a run."""
        for _ in range(steps):
            if not self._ingest_first():
                return
            before = self._read(file_blocks)
            if self.stopping or not fragmented(before, self.reclaim) or before[0] == self._stuck_at:
                return
            past = self._read(rows_past_end)
            n, took = self._step(reclaim_step, self.rows)
            after = self._read(file_blocks)
            log.info(
                "rewrote %d rows at the end of the file in %.1f s: %d -> %d blocks, %d free",
                n,
                took,
                before[0],
                after[0],
                after[2],
            )
            self._count(reclaimed=n)
            # No row past the used size: what stays free is behind an index or metadata, not
            # rows; the keyed tables are rewritten for their indexes, once for a file of this
            # size. (The count of free blocks is no measure of a step: until the last row
            # behind them has moved, each step fills as many holes as it leaves at the end.)
            if n == 0:
                keyed = self._reclaim_keyed(before[0])
                if keyed is None:
                    return
                took = keyed
            elif after[0] >= before[0] and self._read(rows_past_end) >= past:
                # The rows came back to the end: too few free blocks below held them (a small
                # file). Tried again once the file has changed size.
                self._stuck_at = after[0]
                return
            self._stop.wait(took)

    def _reclaim_keyed(self, blocks: int) -> float | None:
        """Rewrite the next keyed tables not yet rewritten for a file of ``blocks`` blocks,
        smallest first, ~``rows`` rows (at least one table): one step; returns the seconds it
        took, None when no table is left."""
        if self._keyed[0] != blocks:
            self._keyed = (blocks, set())
        done = self._keyed[1]
        batch: list[str] = []
        rows = 0
        for table, n in self._read(keyed_tables):
            if table in done or (batch and rows + n > self.rows):
                continue
            batch.append(table)
            rows += n
        if not batch:
            return None
        done.update(batch)
        n, took = self._step(reclaim_keyed, batch)
        log.info("rewrote %s (%d rows) for their indexes in %.1f s", ", ".join(batch), n, took)
        self._count(reclaimed=n)
        return took

    def _move_due(self, now_ns: int | None, drain: bool = False) -> int:
        """Move every chunk that is due, one writer task each; returns the spans moved.
        ``drain``: also the settled spans that waited ``compaction.wait``, as a smaller range,
        unless a range's worth moved in this call: then spans are still arriving (a backlog,
        a busy hour) and the next run's range will hold them."""
        moved = 0
        while self._ingest_first():
            now, oldest = self._now(now_ns)
            wait = self.wait_ns if drain and not moved else 0
            chunk = self._read(
                lambda con, t=now, o=oldest, w=wait: next_chunk(
                    con, t, self.rows, self.after_ns, o, w
                )
            )
            if chunk is None:
                break
            n, took = self._step(compact, chunk, now)
            log.info("compacted %d spans of %s in %.1f s", n, _range_text(chunk), took)
            moved += n
            self._count(chunks=1)
            # A backlog (a large store upgraded, compaction turned on) goes chunk after chunk:
            # rest as long as the chunk took, so that ingest keeps half the writer meanwhile.
            self._stop.wait(took)
        return moved

    def _merge_once(self, now_ns: int | None) -> int | None:
        """Merge the next due ranges (none that begin before retention's cutoff) piece by
        piece through the writer, resting after each piece as long as it took; None when none
        is due. Before each piece, the chunks that became due meanwhile are moved, and the
        spans moved are returned: a merge beside ingest takes a minute or more, and new spans
        should not wait for it in span_data, where a search by room reads every row group.
        Moved one by one, each chunk's old row groups are refilled by ingest before the next
        move frees more (moved all at once after a merge, they stayed free: 385 blocks, 15%
        of the 10 M-span file)."""
        oldest = self._now(now_ns)[1]

        def plan_merge(con: duckdb.DuckDBPyConnection) -> tuple[Merge, list[Piece]] | None:
            plan = next_merge(con, self.merge, self.levels, oldest, self.rows)
            return None if plan is None else (plan, pieces(con, plan, self.rows))

        planned = self._read(plan_merge)
        if planned is None:
            return None
        plan, slices = planned
        started = time.perf_counter()
        spans = moved = 0
        for piece in slices:
            moved += self._move_due(now_ns)
            if not self._ingest_first():  # the next run merges these ranges again, pieces done
                return moved
            n, took = self._step(merge_piece, plan, piece)
            spans += n
            self._stop.wait(took)
        self.run(lambda store: finish_merge(store.con, plan, spans)).result()
        log.info(
            "merged %d ranges (%d spans, level %d) of %s in %.1f s",
            plan.ranges,
            spans,
            plan.level + 1,
            _range_text(Chunk(plan.first_ns, plan.last_ns, spans)),
            time.perf_counter() - started,
        )
        self._count(merges=1, merged=spans)
        return moved


def _on_all_cores(fn: Callable[..., int], *args: Any) -> Callable[[Any], int]:
    """A writer task: ``fn(store.con, *args)`` with DuckDB on every core (a move, a merge piece,
    a reclaim step: ingest waits for it anyway)."""

    def task(store: Any) -> int:
        with store.all_cores():
            return fn(store.con, *args)

    return task


def merge_all(store: Any, fanin: int, levels: int, rows: int) -> int:
    """Every merge that is due, on ``store`` (a DuckDBStore nobody else writes: tests);
    returns the spans rewritten."""
    total = 0
    while (plan := next_merge(store.con, fanin, levels)) is not None:
        spans = sum(
            _on_all_cores(merge_piece, plan, p)(store) for p in pieces(store.con, plan, rows)
        )
        finish_merge(store.con, plan, spans)
        store.checkpoint()
        total += spans
    return total


def _range_text(chunk: Chunk) -> str:
    def fmt(ns: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ns / 1e9))

    return f"{fmt(chunk.first_ns)} – {fmt(chunk.last_ns)} UTC"
