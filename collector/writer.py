"""The one writer: a thread that owns the store's connection and commits decoded batches in groups.

Receivers call :meth:`Writer.submit` with a decoded request and wait on the returned future; it
resolves only after the request's records are committed, so an OK to an exporter means the data
is in the file. The queue is bounded by records and by bytes (the decoded Arrow tables): past
``max_queue_records`` or ``max_queue_bytes`` a submit raises :class:`Overloaded`, which
receivers answer with a retryable status.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

import pyarrow as pa

from . import memory_budget
from .columns import Decoded
from .errors import Overloaded, StoreUnavailable
from .store import SessionPlan, Store, Task
from .writer_load import WriterLoad
from .writer_queue import STOP, Item, TaskItem, group_tables

log = logging.getLogger("roomscope.writer")


class Tracker(Protocol):
    """Session tracking, run by the writer thread (see collector/sessions.py)."""

    def summarize(self, table: pa.Table, signal: str) -> Any: ...

    def prepare(
        self,
        tables: Mapping[str, list[pa.Table]],
        now_ns: int,
        flush: bool = True,
        summaries: Mapping[str, list[Any]] | None = None,
    ) -> tuple[dict[str, list[pa.Table]], SessionPlan | None]: ...

    def commit(self, plan: SessionPlan) -> None: ...

    def sweep(self, now_ns: int) -> SessionPlan | None: ...

    def flush(self) -> SessionPlan | None: ...

    @property
    def pending(self) -> bool: ...


LINGER_SECONDS = 0.002  # longest a group waits for requests still being decoded
IDLE_FLUSH_SECONDS = 0.05  # quiet this long: write pending session-row changes
PROBE_INTERVAL = 1.0  # seconds between write probes while the store is failing


class Writer:
    def __init__(
        self,
        store: Store,
        *,
        max_queue_records: int,
        max_queue_bytes: int,
        max_batch_records: int,
        retry_after: int,
        tracker: Tracker | None,
        sweep_interval: float,
    ):
        self.store = store
        self.max_queue_records = max_queue_records
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_records = max_batch_records
        self.retry_after = retry_after
        self.tracker = tracker
        self.sweep_interval = sweep_interval
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.healthy = True
        self.load = WriterLoad()  # what Writer.busy answers from
        self.decoding: Callable[[], int] = lambda: 0  # requests being decoded (the Ingestor's)
        self.stats = {
            "commits": 0,
            "records": 0,
            "requests": 0,
            "rejected_overload": 0,
            "sweeps": 0,
        }

    @classmethod
    def from_settings(cls, store: Store, settings: Any, tracker: Tracker | None) -> Writer:
        """A writer with the limits of ``limits.*`` (its bytes within the memory budget:
        collector.memory_budget), ``writer.*`` and ``sessions.*``."""
        return cls(
            store,
            max_queue_records=settings.get("limits.max_queue_records"),
            max_queue_bytes=memory_budget.queue_bytes(settings),
            max_batch_records=settings.get("writer.max_batch_records"),
            retry_after=settings.get("limits.retry_after"),
            tracker=tracker,
            sweep_interval=settings.get("sessions.sweep_interval"),
        )

    # -- receiving side -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="roomscope-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def busy(self) -> bool:
        """Whether ingest needs the writer now (collector.writer_load): maintenance that can
        wait (compaction) waits meanwhile, not to take the writer from ingest that has none
        to spare."""
        return self.load.busy(
            self._pending / self.max_queue_records, self._pending_bytes / self.max_queue_bytes
        )

    def refuse_if_full(self) -> None:
        """Raise Overloaded when the queue has no room at all, before a request is decoded:
        under overload the CPU goes to the requests that can be queued, not to decoding ones
        that would be refused anyway (submit still checks each request's own size)."""
        with self._lock:
            self._refuse_unless_room(1, 1)

    def _refuse_unless_room(self, records: int, nbytes: int) -> None:
        """Raise Overloaded unless ``records`` records of ``nbytes`` bytes fit the queue's
        bounds (an empty queue takes any one request); called holding the lock."""
        full = self._pending + records > self.max_queue_records
        full = full or self._pending_bytes + nbytes > self.max_queue_bytes
        if self._pending and full:
            self.stats["rejected_overload"] += 1
            self.load.refused()
            raise Overloaded(
                f"write queue full ({self._pending} records, {self._pending_bytes} bytes"
                " waiting); retry later",
                self.retry_after,
            )

    def submit(self, decoded: Decoded) -> Future:
        """Queue a decoded request; the future resolves (None) once it is committed."""
        n = decoded.accepted
        item = Item(decoded)
        if n == 0:
            item.future.set_result(None)
            return item.future
        item.nbytes = decoded.nbytes
        with self._lock:
            if self._closed:
                raise StoreUnavailable("collector is shutting down")
            self._refuse_unless_room(n, item.nbytes)
            self._pending += n
            self._pending_bytes += item.nbytes
        self._queue.put(item)
        return item.future

    def run(self, fn: Task) -> Future:
        """Run ``fn(store)`` on the writer thread, between group commits (maintenance such as
        retention deletes: the writer owns the connection). The future has its result."""
        task = TaskItem(fn)
        with self._lock:
            if self._closed:
                raise StoreUnavailable("collector is shutting down")
        self._queue.put(task)
        return task.future

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, commit everything queued, then stop the thread."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._queue.put(STOP)
            self._thread.join(timeout)
        st = self.stats
        log.info(
            "writer stopped: %d records in %d requests, %d group commits (%.1f requests each)",
            st["records"],
            st["requests"],
            st["commits"],
            st["requests"] / max(1, st["commits"]),
        )

    # -- writing side ---------------------------------------------------------------------
    def _run(self) -> None:
        next_sweep = time.monotonic() + self.sweep_interval
        next_probe = 0.0
        while True:
            if not self.healthy and time.monotonic() >= next_probe:
                # On a clock, not only when idle: under steady traffic the queue never runs dry,
                # and a request can fail before it reaches the store (which reopens it).
                self._probe()
                next_probe = time.monotonic() + PROBE_INTERVAL
            wait = max(0.0, next_sweep - time.monotonic())
            if self.tracker is not None and self.tracker.pending:
                wait = min(wait, IDLE_FLUSH_SECONDS)
            if not self.healthy:
                wait = min(wait, max(0.0, next_probe - time.monotonic()))
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
                self._flush_sessions()
            if item is STOP:
                self._drain_and_stop()
                return
            if isinstance(item, TaskItem):
                item(self.store)
            elif item is not None:
                group, after = self._gather(item)
                self._commit(group)
                if after is STOP:
                    self._drain_and_stop()
                    return
                if after is not None:
                    after(self.store)
            if time.monotonic() >= next_sweep:
                self._sweep()
                self.stats["sweeps"] += 1
                if self._queue.empty():
                    self._checkpoint(idle=True)
                next_sweep = time.monotonic() + self.sweep_interval

    def _checkpoint(self, idle: bool) -> None:
        """Let the store checkpoint if its thresholds say so: right after a commit under load,
        or while nothing waits."""
        if not self.healthy:
            return
        try:
            self.store.maybe_checkpoint(idle)
        except Exception as exc:
            log.warning("%s checkpoint failed: %s", "idle" if idle else "load", exc)

    def _gather(self, first: Item) -> tuple[list[Item], Any]:
        """The next group commit: what is queued, up to max_batch_records. When requests are
        still being decoded, wait up to LINGER_SECONDS for them: each group pays a commit and
        the session bookkeeping once, so fewer, bigger groups cost less per record.

        Also returns what ends the group early, to be done right after its commit: STOP, or
        a task (``run``). A task is not put back at the end of the queue: under sustained load
        the queue never empties, and retention and compaction would wait for the load to end."""
        group = [first]
        n = first.decoded.accepted
        deadline = time.monotonic() + LINGER_SECONDS
        while n < self.max_batch_records:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.decoding():
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is STOP or isinstance(item, TaskItem):
                return group, item
            group.append(item)
            n += item.decoded.accepted
        return group, None

    def _drain_and_stop(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, TaskItem):
                item(self.store)
            elif item is not STOP:
                self._commit([item])
        self._sweep()

    def _probe(self) -> None:
        """While the store is failing, try a tiny write now and then so health (and /readyz)
        comes back by itself once the disk is usable again, even with no traffic."""
        try:
            self.store.probe()  # reconnects after a fatal failure
        except Exception:
            return
        log.warning("store is writable again")
        self.healthy = True

    def _flush_sessions(self) -> None:
        if self.tracker is not None and self.tracker.pending and self.healthy:
            self._write_plan(self.tracker.flush, "writing session rows")

    def _sweep(self) -> None:
        if self.tracker is not None:
            self._write_plan(lambda: self.tracker.sweep(time.time_ns()), "session sweep")

    def _write_plan(self, make: Callable[[], SessionPlan | None], what: str) -> None:
        """A tracker plan of its own (no records) in one transaction, adopted once committed."""
        assert self.tracker is not None
        try:
            with self.store.session_turn() as changed:
                self.tracker.adopt(changed)
                plan = make()
                if plan is not None:
                    self.store.append({}, plan)
                    self.tracker.commit(plan)
        except Exception:
            log.exception("%s failed; will retry", what)

    def _write(self, group: list[Item], join: bool = True) -> None:
        if self.tracker is None:
            tables, _, side = group_tables(group)
            self.store.append({**side, **tables})
            return
        with self.store.session_turn() as changed:  # other collectors' session rows, if any
            if join and self.store.shared:
                self._join_waiting(group)
            tables, summaries, side = group_tables(group)
            self.tracker.adopt(changed)
            # A lone request with nothing queued behind it writes its session-row changes now;
            # under load they wait (for IDLE_FLUSH_SECONDS of quiet, the next sweep, or 1 s),
            # unless other collectors share the store.
            alone = (len(group) == 1 and self._queue.empty()) or self.store.shared
            tables, plan = self.tracker.prepare(tables, time.time_ns(), alone, summaries)
            self.store.append({**side, **tables}, plan)
            if plan is not None:
                self.tracker.commit(plan)

    def _join_waiting(self, group: list[Item]) -> None:
        """Add to ``group`` the requests queued behind it, up to max_batch_records: on a shared
        store they arrived while this replica waited for its session turn (another held it),
        and turns do not overlap, so each should carry what is there (a lake's turn costs
        ~25 ms besides its records: docs/scale-out.md). A task or stop stays queued."""
        n = sum(item.decoded.accepted for item in group)
        while n < self.max_batch_records:
            with self._queue.mutex:  # only this thread takes from the queue
                head = self._queue.queue[0] if self._queue.queue else None
            if not isinstance(head, Item):
                return
            item = self._queue.get_nowait()
            group.append(item)
            n += item.decoded.accepted

    def _commit(self, group: list[Item], join: bool = True) -> None:
        """Commit ``group`` (which _write may extend, when ``join``) and answer its requests."""
        started = time.monotonic()
        try:
            self._write(group, join)
        except Exception as exc:
            if len(group) > 1 and not isinstance(exc, StoreUnavailable):
                # One bad request must not fail the others: commit them one by one.
                for item in group:
                    self._commit([item], join=False)
                return
            self._fail(group, sum(item.decoded.accepted for item in group), exc)
            return
        n = sum(item.decoded.accepted for item in group)
        self.healthy = True
        with self._lock:
            self._pending -= n
            self._pending_bytes -= sum(item.nbytes for item in group)
        self._checkpoint(idle=False)
        self.load.worked(time.monotonic() - started)
        self.stats["commits"] += 1
        self.stats["records"] += n
        self.stats["requests"] += len(group)
        for item in group:
            item.future.set_result(None)

    def _fail(self, group: list[Item], n: int, exc: Exception) -> None:
        log.error("commit of %d records failed: %s", n, exc)
        if isinstance(exc, StoreUnavailable):
            # Retryable (503 / UNAVAILABLE); nothing of the group was committed.
            self.healthy = False
        with self._lock:
            self._pending -= n
            self._pending_bytes -= sum(item.nbytes for item in group)
        for item in group:
            item.future.set_exception(exc)
