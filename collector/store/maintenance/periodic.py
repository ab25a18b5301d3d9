"""A background job that runs every ``interval`` seconds on its own thread (retention,
compaction): its work goes through the writer (``Writer.run``), which owns the connection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("roomscope")

Run = Callable[[Callable[[Any], Any]], Any]  # Writer.run


class Periodic:
    name = "job"

    def __init__(self, run: Run, interval: float, enabled: bool = True):
        self.run = run
        self.interval = interval
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.stats: dict[str, int] = {"runs": 0}

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = threading.Thread(
            target=self._loop, name=f"roomscope-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception as exc:  # the store may be failing; the next round tries again
                log.warning("%s run failed: %s", self.name, exc)

    def run_once(self) -> Any:
        raise NotImplementedError

    def _count(self, **added: int) -> None:
        """Add to ``stats`` (what the job did so far)."""
        with self._lock:
            for key, n in added.items():
                self.stats[key] = self.stats.get(key, 0) + n

    def _finished(self, **added: int) -> None:
        """Count a run and what it did."""
        self._count(runs=1, **added)
