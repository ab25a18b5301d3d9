"""Shared fixtures: a collector on free ports over a store in tmp_path, real OTel SDK exporters."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (otlp_factory, otel_sdk)

from postgres import Postgres, running_postgres
from slow_store import SlowStore
from slow_store import slow_store as _slow_store

from collector.server import Collector, CollectorThread, loopback_settings
from collector.sessions import SessionTracker
from collector.settings import Settings
from collector.store import DuckDBStore, Store, create_store
from collector.store.maintenance.compaction import Compaction
from collector.tagging import Tagger
from collector.writer import Writer
from query.http.serving import serving_thread
from query.library.reader import Reader
from query.library.usage import parse_prices

DEFAULTS = loopback_settings(":memory:")  # every setting at its default (store path aside)


def make_settings(db: Path | str, **overrides: Any) -> Settings:
    """Settings for a test collector: loopback, free ports, the given store file."""
    return loopback_settings(db, **overrides)


def make_store(db: Path | str, **overrides: Any) -> DuckDBStore:
    """A store (not opened) with the default settings but ``overrides``."""
    store = create_store(make_settings(db, **overrides))
    assert isinstance(store, DuckDBStore)
    return store


# The storage backends the query, CLI and API tests run against (SPEC 10).
BACKENDS = ["duckdb", "ducklake"]
_lakes = iter(range(1, 1_000_000))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the session's lakes (each lake a database of its own)."""
    with running_postgres() as pg:
        yield pg


def lake_settings(pg: Postgres, data_path: Path) -> dict[str, Any]:
    """Setting overrides for a new, empty lake: a fresh catalog database, files in
    ``data_path``."""
    data_path.mkdir(parents=True, exist_ok=True)
    return {
        "store.backend": "ducklake",
        "store.catalog": pg.create_database(f"lake{next(_lakes)}"),
        "store.data_path": str(data_path),
    }


def lake_args(overrides: dict[str, Any]) -> list[str]:
    """The CLI's global options that read the lake of ``overrides`` (lake_settings)."""
    return [
        "--store",
        "ducklake:" + overrides["store.catalog"],
        "--data-path",
        overrides["store.data_path"],
    ]


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of start_collector's stores: "duckdb" unless a test parametrizes it
    (``@pytest.mark.parametrize("backend", BACKENDS, indirect=True)``)."""
    return getattr(request, "param", "duckdb")


def backend_settings(request: pytest.FixtureRequest, backend: str, root: Path) -> dict[str, Any]:
    """Overrides for ``backend``: none for the file, a new lake (under ``root``) for DuckLake."""
    if backend == "duckdb":
        return {}
    return lake_settings(request.getfixturevalue("postgres"), root / "lake")


def make_tagger(**overrides: Any) -> Tagger:
    """The default tagging rules (``tagging.*``), with ``overrides``."""
    return Tagger.from_settings(DEFAULTS.replace(**overrides))


def make_tracker(idle_timeout: float = 300.0, max_future_skew: float = 300.0) -> SessionTracker:
    return SessionTracker(idle_timeout, max_future_skew)


def make_writer(store: Store, tracker: SessionTracker | None = None, **kw: Any) -> Writer:
    """A writer with the default limits (``limits.*``, ``writer.*``) unless given."""
    s = DEFAULTS
    args: dict[str, Any] = {
        "max_queue_records": s.get("limits.max_queue_records"),
        "max_queue_bytes": s.get("limits.max_queue_bytes"),
        "max_batch_records": s.get("writer.max_batch_records"),
        "retry_after": s.get("limits.retry_after"),
        "tracker": tracker,
        "sweep_interval": s.get("sessions.sweep_interval"),
    }
    args.update(kw)
    return Writer(store, **args)


@contextmanager
def running_writer(
    store: Store, tracker: SessionTracker | None = None, **kw: Any
) -> Iterator[Writer]:
    """The store opened and a started writer on it (make_writer, ``kw`` its limits); both
    closed on the way out."""
    store.open()
    if tracker is not None:
        tracker.attach(store)
    writer = make_writer(store, tracker=tracker, **kw)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()
        store.close()


def compaction_job(run: Any, cursor: Any, rows: int, **kw: Any) -> Compaction:
    """A compaction job of ``rows`` a chunk, due at once, nothing else unless given (merge,
    levels, reclaim)."""
    args: dict[str, Any] = {
        "after": 0,
        "interval": 60.0,
        "max_age": 0.0,
        "merge": 0,
        "levels": 0,
        "reclaim": 0.0,
    }
    args.update(kw)
    return Compaction(run, cursor, rows=rows, **args)


def make_reader(con: duckdb.DuckDBPyConnection, **kw: Any) -> Reader:
    """A query-library reader with the default ``query.*`` settings unless given."""
    s = DEFAULTS
    args: dict[str, Any] = {
        "default_limit": s.get("query.default_limit"),
        "timeout": s.get("query.timeout"),
        "max_rows": s.get("query.max_rows"),
        "idle_timeout": s.get("sessions.idle_timeout"),
        "prices": parse_prices(s.get("usage.prices")),
    }
    args.update(kw)
    return Reader(con, **args)


def slow_store(db: Path | str, delay: float, **overrides: Any) -> SlowStore:
    """A store whose every commit takes ``delay`` seconds longer (overload tests)."""
    return _slow_store(make_settings(db, **overrides), delay)


class RunningCollector:
    """A started collector plus the addresses tests need."""

    def __init__(self, thread: CollectorThread, db: Path):
        self.thread = thread
        self.collector: Collector = thread.collector
        self.db = db

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['http']}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.collector.ports['grpc']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['api']}"

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Read the store through a reader cursor of the running collector."""
        cur = self.collector.store.cursor()
        try:
            return cur.execute(sql, params or []).fetchall()
        finally:
            cur.close()

    def job(self, name: str) -> Any:
        """The collector's maintenance job called ``name`` (retention, compaction)."""
        (job,) = [j for j in self.collector.jobs if j.name == name]
        return job

    def stop(self) -> None:
        self.thread.stop()


def wait_for_job(job: Any, done: Any, seconds: float = 20.0) -> None:
    """Wait until ``done(job.stats)`` holds (a job runs on its own thread; fails after
    ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not done(dict(job.stats)):
        assert time.monotonic() < deadline, job.stats
        time.sleep(0.01)


@pytest.fixture
def start_collector(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: start_collector(**setting_overrides) -> RunningCollector; stopped at teardown.
    Its store is of the ``backend`` fixture's kind (a file in tmp_path, or one lake for every
    collector the test starts)."""
    started: list[RunningCollector] = []
    lake = backend_settings(request, backend, tmp_path)

    def start(
        db: Path | None = None, store: Store | None = None, **overrides: Any
    ) -> RunningCollector:
        """``store``: a store of the test's own (a SlowStore) instead of the settings' one."""
        db = db or tmp_path / "roomscope.duckdb"
        thread = serving_thread(make_settings(db, **{**lake, **overrides}), store=store)
        thread.start()
        rc = RunningCollector(thread, db)
        started.append(rc)
        return rc

    yield start
    for rc in started:
        rc.stop()


@pytest.fixture
def collector(start_collector: Any) -> RunningCollector:
    """A collector with default settings on free ports, store in tmp_path."""
    return start_collector()


def read_store(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Read a store file after its collector stopped."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


# tests/benchmarks/ holds scripts run by hand (not tests); never import them while collecting.
collect_ignore_glob = ["benchmarks/*"]
