"""What roomscope asks of a storage backend: the one interface every caller uses.

The collector's writer thread appends decoded batches (with the session tracker's rows),
probes and checkpoints; the session tracker reads its state back; the maintenance jobs are
the backend's own (it knows its layout); the query side gets read cursors. The embedded
DuckDB file (:class:`~collector.store.duckdb_store.DuckDBStore`) is one implementation; a
DuckLake backend is a second one of this same protocol, not a fork of its callers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from .outbox import OutboxBatch
from .session_rows import SessionPlan, SessionState

# A function the writer thread runs between commits (``Writer.run``), with its result.
Task = Callable[["Store"], Any]
Run = Callable[[Task], Future]
# Whether ingest needs the writer now (collector.writer.Writer.busy): maintenance that can wait
# does.
Busy = Callable[[], bool]
# Per active session: (session id, spans, log records, metric points, errors) in the data.
Recount = tuple[str, int, int, int, int]


class Job(Protocol):
    """A background maintenance job (retention, compaction) a backend runs for itself."""

    name: str
    stats: dict[str, int]

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Store(Protocol):
    """A storage backend. Every method but :meth:`cursor` is called from one thread at a time
    (the writer's, or a command's that owns the store)."""

    @property
    def location(self) -> str:
        """Where the data is, as users name it (a file path, a lake's catalog)."""
        ...

    @property
    def generation(self) -> int:
        """Bumped each time the backend reconnects after a failure: state read before (the
        session tracker's) must be read again, since a failed commit may or may not be in."""
        ...

    def open(self) -> None:
        """Connect, create or migrate the tables; raises StoreError with a clear reason."""
        ...

    @property
    def shared(self) -> bool:
        """Other collectors write the same store (a lake's replicas): session rows are written
        with every commit, never deferred, so that the others see them at their next turn."""
        ...

    def session_turn(self) -> AbstractContextManager[list[SessionState]]:
        """Around planning and committing session rows: yields the session rows other
        collectors changed since this one's last turn (none for a store of one collector),
        and keeps the others' turns out until it exits (collector/store/lake_sessions.py)."""
        ...

    def append(
        self, tables: Mapping[str, Sequence[pa.Table]], sessions: SessionPlan | None = None
    ) -> None:
        """Commit decoded batches (signal and shared tables) and the session rows of ``sessions``
        in one transaction: all or nothing. Raises StoreUnavailable when the store cannot be
        written (retryable), another RoomscopeError or DuckDB error when the data is at fault."""
        ...

    def probe(self) -> None:
        """A tiny write: returns only when a commit can reach the store again."""
        ...

    def maybe_checkpoint(self, idle: bool) -> None:
        """Fold pending writes into their final layout when the backend's thresholds say so
        (after a commit under load, or while idle)."""
        ...

    def checkpoint(self) -> None: ...

    def load_sessions(self) -> list[SessionState]:
        """Every stored session row, oldest first."""
        ...

    def recount_active(self) -> list[Recount]:
        """The records of each active session counted again from the data."""
        ...

    def jobs(
        self, run: Run, forget: Callable[[set[str]], None] | None, busy: Busy | None = None
    ) -> list[Job]:
        """The backend's maintenance jobs, each acting through ``run`` (the writer thread);
        ``forget`` is told the ids of sessions whose rows retention deleted; work that can wait
        (compaction) waits while ``busy()`` says ingest needs the writer."""
        ...

    # The forwarding queue (collector.forwarder): written with each append once opened.
    def outbox_open(self, endpoints: Mapping[str, str], max_bytes: int) -> None:
        """From now on, queue every append for ``endpoints`` (name → URL), at most
        ``max_bytes`` (the oldest unsent batches are dropped and counted past it)."""
        ...

    def outbox_take(self, endpoint: str, limit: int) -> list[OutboxBatch]:
        """The oldest batches ``endpoint`` has not sent (any thread: reads on a cursor)."""
        ...

    def outbox_done(
        self,
        endpoint: str,
        seq: int,
        sent: tuple[int, int],
        rejected: tuple[int, int],
        error: str | None,
    ) -> None:
        """``endpoint`` is past every batch up to ``seq``: (batches, records) ``sent``, and
        ``rejected`` for good by the upstream (``error``); rows every endpoint is past go."""
        ...

    def outbox_failed(self, endpoint: str, error: str) -> None:
        """A retryable failure of ``endpoint``, kept as its last error."""
        ...

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A read cursor for the query library (thread-safe to create; close it when done)."""
        ...

    def close(self) -> None: ...
