"""The store the query tests read: the demo workload (OTel SDK over gRPC) plus a few spans over
OTLP/HTTP, sent through a running collector. ``world`` is imported by test_cli/test_api."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import BACKENDS, backend_settings, lake_args, make_settings, read_store
from otel_sdk import pipeline

import query.library.reader
from collector.server import CollectorThread
from collector.store.reads import LakeConfig, open_lake_reader
from query.cli.demo import MS, SEC, Manifest, SentSpan, send_workload
from query.http.serving import serving_thread


class World:
    """A collector over one store (a file, or a lake: ``lake`` holds its settings), filled
    once; ``offline()`` stops it for --db readers, ``local()`` gives the CLI's options that
    read the store directly."""

    def __init__(self, db: Path, lake: dict | None = None):
        self.db = db
        self.lake = lake or {}
        self.backend = "ducklake" if lake else "duckdb"
        self.thread: CollectorThread | None = None
        self.start()

    def start(self) -> None:
        self.thread = serving_thread(make_settings(self.db, **self.lake))
        self.collector = self.thread.start()

    @contextmanager
    def local(self) -> Iterator[list[str]]:
        """The global options that read the store itself: ``--db FILE`` (the collector stopped
        meanwhile, as it holds the file) or ``--store ducklake:... --data-path ...`` (while the
        collector keeps running: a lake has any number of readers)."""
        if self.lake:
            yield lake_args(self.lake)
            return
        with self.offline() as db:
            yield ["--db", db]

    def read(self, sql: str) -> list[tuple]:
        """Rows of ``sql`` read from the store itself (not through the collector)."""
        if not self.lake:
            with self.offline() as db:
                return read_store(Path(db), sql)
        lake = LakeConfig(self.lake["store.catalog"], self.lake["store.data_path"])
        con = open_lake_reader(lake, "1GiB")
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['api']}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['http']}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.collector.ports['grpc']}"

    @contextmanager
    def offline(self) -> Iterator[str]:
        """The collector stopped (its file released) for the duration; restarted afterwards."""
        self.stop()
        try:
            yield str(self.db)
        finally:
            self.start()

    def fill(self) -> Manifest:
        manifest = send_workload(self.grpc_endpoint)
        # Over OTLP/HTTP: an attribute status=error on a span whose status code is not ERROR.
        p = pipeline("http", self.http_url, self.grpc_endpoint, {"service.name": "qa-bot"})
        tracer = p.tracer()
        start = manifest_start(manifest)
        for name, dur_ms, attrs in (
            ("check", 1500, {"status": "error"}),
            ("check", 1000, {"status": "ok"}),
            ("probe", 999, {"status": "error"}),
        ):
            tags = {"room": "qa", "session": "qa-1", **attrs}
            span = tracer.start_span(name, attributes=tags, start_time=start)
            span.end(end_time=start + dur_ms * MS)
            c = span.get_span_context()
            manifest.spans.append(
                SentSpan(
                    f"{c.trace_id:032x}", f"{c.span_id:016x}", name, "qa", "qa-1", "qa-bot",
                    dur_ms * MS, "UNSET", tags,
                )
            )  # fmt: skip
        p.shutdown()
        manifest.rooms.append("qa")
        manifest.explicit_sessions.append("qa-1")
        return manifest


def manifest_start(m: Manifest) -> int:
    return time.time_ns() - 3 * 60 * SEC


def filled_world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest | None = None
) -> Iterator[World]:
    """Body of the module-scoped ``world`` fixture of each query test module.

    Readers show a session as ended once its last record is ``sessions.idle_timeout`` old
    (SPEC 3), and some of the workload's sessions get there minutes after the fill: the
    readers' clock (``query.library.reader``'s) stays at the fill's end, so that which sessions
    are active is the same for every reader (``--server``, ``--db``, the API) all module long.
    """
    root = tmp_path_factory.mktemp("query")
    backend = getattr(request, "param", "duckdb") if request is not None else "duckdb"
    lake = backend_settings(request, backend, root) if request is not None else {}
    w = World(root / "roomscope.duckdb", lake)
    try:
        w.manifest = w.fill()
        with pytest.MonkeyPatch.context() as mp:
            frozen = time.time_ns()
            mp.setattr(query.library.reader, "time", SimpleNamespace(time_ns=lambda: frozen))
            yield w
    finally:
        w.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    yield from filled_world(tmp_path_factory, request)


def test_every_sent_span_is_stored_with_its_room_session_and_duration(world: World) -> None:
    rows = world.read("SELECT span_id, room, session_id, duration_ns, status_code FROM spans")
    stored = {r[0]: r[1:] for r in rows}
    assert len(stored) == len(world.manifest.spans) >= 100
    for s in world.manifest.spans:
        room, session, duration, status = stored[s.span_id]
        assert (room, duration, status) == (s.room, s.duration_ns, s.status)
        if s.session is not None:
            assert session == s.session
        else:
            assert session  # inferred by the collector
