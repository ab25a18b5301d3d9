"""Shared fixtures: a collector on free ports over a store in tmp_path, real OTel SDK exporters."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (otlp_factory, otel_sdk)

from collector.server import Collector, CollectorThread, loopback_settings
from collector.settings import Settings


def make_settings(db: Path, **overrides: Any) -> Settings:
    """Settings for a test collector: loopback, free ports, the given store file."""
    return loopback_settings(db, **overrides)


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

    def stop(self) -> None:
        self.thread.stop()


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Any]:
    """Factory: start_collector(**setting_overrides) -> RunningCollector; stopped at teardown."""
    started: list[RunningCollector] = []

    def start(db: Path | None = None, **overrides: Any) -> RunningCollector:
        db = db or tmp_path / "roomscope.duckdb"
        thread = CollectorThread(make_settings(db, **overrides))
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
