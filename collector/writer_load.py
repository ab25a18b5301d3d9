"""How much ingest needs the writer now: what maintenance that can wait (compaction) asks
before each step it would take from ingest (Writer.busy, collector.store.maintenance).

Ingest counts as busy when the queue is more than BUSY_SHARE full (records or bytes), for
BUSY_AFTER_REFUSAL seconds after a request was refused, or while committing ingest took more
than BUSY_LOAD of the writer's time over the last ~LOAD_SECONDS. The last is what exporters
feel first: they wait for their acknowledgements, so a writer held by a move shows as latency
and fewer spans sent long before the queue fills (a soak at 45 k spans/s, 8 connections, with
compaction running beside it: p99 1.3 s and 36 k spans/s acknowledged, the queue never full).
"""

from __future__ import annotations

import math
import time

BUSY_SHARE = 0.25
BUSY_AFTER_REFUSAL = 5.0
BUSY_LOAD = 0.25
LOAD_SECONDS = 10.0


class WriterLoad:
    """The writer thread notes its ingest commits and refusals; any thread asks ``busy``."""

    def __init__(self) -> None:
        self._refused_at = -math.inf  # time.monotonic() of the last refusal
        # Seconds of ingest commits, decaying with time constant LOAD_SECONDS, as of _at.
        self._work = 0.0
        self._at = time.monotonic()

    def refused(self) -> None:
        self._refused_at = time.monotonic()

    def worked(self, seconds: float) -> None:
        """The writer spent ``seconds`` committing ingest (called by its thread only)."""
        now = time.monotonic()
        self._work = self._work * math.exp((self._at - now) / LOAD_SECONDS) + seconds
        self._at = now

    def load(self) -> float:
        """About the share of the writer's last LOAD_SECONDS spent committing ingest."""
        work, at = self._work, self._at
        return work * math.exp(min(0.0, at - time.monotonic()) / LOAD_SECONDS) / LOAD_SECONDS

    def busy(self, records: float, bytes_share: float) -> bool:
        """``records``, ``bytes_share``: how full the queue is (0-1) by each bound."""
        if time.monotonic() - self._refused_at < BUSY_AFTER_REFUSAL:
            return True
        return max(records, bytes_share) > BUSY_SHARE or self.load() > BUSY_LOAD
