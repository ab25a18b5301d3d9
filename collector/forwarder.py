"""Forwarding: every committed record also goes to the configured OTLP endpoints (SPEC 12).

The store queues each commit's batches in ``forward_outbox`` in the commit's own transaction
(collector.store.outbox), so the queue survives restarts and outages. Here one thread per
endpoint takes the oldest batches that endpoint has not sent, builds each one's OTLP request
(collector.forward_build) and sends it (collector.otlp_sender, with the OTLP retry rules:
only HTTP 429/502/503/504 and gRPC UNAVAILABLE/RESOURCE_EXHAUSTED are retried, after
Retry-After or an exponential backoff). Batches go in commit order, one at a time, so each
signal arrives in order; a batch is retried until it is sent (at least once: a crash between
the send and the record of it sends it again), unless the upstream refuses it for good (any
other answer): then it is dropped, counted and logged. Progress and counters are written
through ``Writer.run``: the writer thread stays the only writer.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from .errors import StoreUnavailable
from .forward_build import build_payload
from .otlp_sender import MAX_DELAY, Sender, Unreachable, open_sender
from .store import OutboxBatch, Store, Task
from .tagging import Tagger

log = logging.getLogger("roomscope.forward")

TAKE = 8  # batches read from the queue at once
POLL_SECONDS = 0.1  # how often an idle endpoint looks for new batches
ATTEMPTS = 3  # sends of a batch per round (the sender's own retries); rounds never end
FIRST_BACKOFF = 0.5


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def endpoints_from_settings(settings: Any) -> list[Endpoint]:
    """The ``forward.endpoints`` setting (checked by settings_table) as endpoints, by name."""
    return [
        Endpoint(name, t["url"], dict(t.get("headers") or {}))
        for name, t in sorted(settings.get("forward.endpoints").items())
    ]


class _Stopping(Exception):
    pass


def _exit_with(parent: int) -> None:
    """In the build process: exit as soon as the collector is gone (a SIGKILL leaves nothing
    that would tell it otherwise)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="roomscope-forward-watch", daemon=True).start()


class Forwarder:
    """The endpoints' threads. ``run`` is ``Writer.run``; ``store`` reads the queue."""

    def __init__(
        self,
        store: Store,
        run: Callable[[Task], Future],
        endpoints: list[Endpoint],
        tagger: Tagger,
        *,
        max_queue_bytes: int,
        timeout: float,
    ):
        self.store = store
        self.run = run
        self.endpoints = endpoints
        self.tagger = tagger
        self.max_queue_bytes = max_queue_bytes
        self.timeout = timeout
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._keys = (tagger.project_keys[0], tagger.room_keys[0], tagger.session_keys[0])
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, store: Store, run: Callable[[Task], Future], settings: Any
    ) -> Forwarder | None:
        """The forwarder of ``forward.*`` (None: no endpoints)."""
        endpoints = endpoints_from_settings(settings)
        if not endpoints:
            return None
        return cls(
            store,
            run,
            endpoints,
            Tagger.from_settings(settings),
            max_queue_bytes=settings.get("forward.max_queue_bytes"),
            timeout=settings.get("forward.timeout"),
        )

    def start(self) -> None:
        """Open the queue (before any ingest), then start one thread per endpoint."""
        urls = {e.name: e.url for e in self.endpoints}
        self.run(lambda s: s.outbox_open(urls, self.max_queue_bytes)).result()
        self._pool = self._new_pool()
        for endpoint in self.endpoints:
            thread = threading.Thread(
                target=self._loop,
                args=(endpoint,),
                name=f"roomscope-forward-{endpoint.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        log.info("forwarding to %s", ", ".join(f"{e.name} ({e.url})" for e in self.endpoints))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending (what was not sent stays queued for the next start)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- building requests: in a process of their own -------------------------------------
    @staticmethod
    def _new_pool() -> ProcessPoolExecutor:
        """One build process: building holds the interpreter lock for tens of milliseconds per
        batch, which in this process would stall the receivers and the writer each time."""
        return ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with,
            initargs=(os.getpid(),),
        )

    def _build(self, batch: OutboxBatch) -> tuple[str, bytes, int]:
        """(signal, request bytes, records) of a batch; raises when it cannot be built."""
        for attempt in range(2):
            pool = self._pool
            if pool is None:
                raise _Stopping
            try:
                return pool.submit(build_payload, batch.payload, self._keys).result()
            except BrokenProcessPool:  # the build process died (killed?): start another
                if self._stop.is_set() or attempt:
                    raise
                with self._pool_lock:
                    if self._pool is pool:
                        self._pool = self._new_pool()
        raise AssertionError("unreachable")

    # -- one endpoint's thread ------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopping

    def _loop(self, endpoint: Endpoint) -> None:
        sender = open_sender(endpoint.url, endpoint.headers, self.timeout, ATTEMPTS, self._sleep)
        try:
            while not self._stop.is_set():
                try:
                    self._forward(endpoint, sender)
                except StoreUnavailable as exc:
                    # The disk failed (the writer probes until it is back): try again; what
                    # was sent but not recorded goes again (at least once).
                    if not self._stop.is_set():
                        log.warning("forwarding to %s waits for the store: %s", endpoint.name, exc)
                        self._sleep(1.0)
        except _Stopping:
            pass
        except Exception:
            if not self._stop.is_set():  # else: the store closed under a read at shutdown
                log.exception("forwarding to %s failed", endpoint.name)
        finally:
            sender.close()

    def _forward(self, endpoint: Endpoint, sender: Sender) -> None:
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            batches = self.store.outbox_take(endpoint.name, TAKE)
            if not batches:
                self._sleep(POLL_SECONDS)
                continue
            sent = [0, 0]
            rejected = [0, 0]
            done = 0
            error: str | None = None
            for batch in batches:
                try:
                    signal, body, records = self._build(batch)
                except _Stopping:
                    raise
                except Exception as exc:  # a defect: drop the batch rather than stop here
                    log.exception("forwarding to %s: batch %d", endpoint.name, batch.seq)
                    rejected[0] += 1
                    rejected[1] += batch.records
                    error = f"cannot build a request: {exc}"[:500]
                    done = batch.seq
                    continue
                try:
                    answer = sender.send(signal, body, "protobuf")
                except Unreachable as exc:
                    problem = str(exc)
                else:
                    if answer.ok:
                        sent[0] += 1
                        sent[1] += records
                        done = batch.seq
                        backoff = FIRST_BACKOFF
                        continue
                    problem = f"{answer.status}: {answer.message}".rstrip(": ")
                    if not answer.retryable:
                        # Refused for good: retrying would block every batch behind it.
                        log.warning(
                            "forwarding to %s: %s refused a batch of %d %s for good; dropped",
                            endpoint.name,
                            answer.status,
                            records,
                            signal,
                        )
                        rejected[0] += 1
                        rejected[1] += records
                        error = problem
                        done = batch.seq
                        continue
                # Retryable: record the error, wait, and try this batch again.
                self._record(endpoint, done, sent, rejected, error)
                done, sent, rejected, error = 0, [0, 0], [0, 0], None
                self._failed(endpoint, problem)
                self._sleep(backoff)
                backoff = min(backoff * 2, MAX_DELAY)
                break
            self._record(endpoint, done, sent, rejected, error)

    def _record(
        self,
        endpoint: Endpoint,
        seq: int,
        sent: list[int],
        rejected: list[int],
        error: str | None,
    ) -> None:
        if not seq:
            return
        s, r = (sent[0], sent[1]), (rejected[0], rejected[1])
        self.run(lambda st: st.outbox_done(endpoint.name, seq, s, r, error)).result()

    def _failed(self, endpoint: Endpoint, problem: str) -> None:
        log.warning("forwarding to %s: %s; will retry", endpoint.name, problem)
        self.run(lambda st: st.outbox_failed(endpoint.name, problem[:500])).result()
