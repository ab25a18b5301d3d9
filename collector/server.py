"""The collector's lifecycle: store + writer + maintenance jobs + OTLP receivers (+ an HTTP app
on the query port, composed by the caller), started and stopped in order.

``Collector`` runs on an asyncio loop (``serve()`` for the CLI, with SIGINT/SIGTERM handling);
``CollectorThread`` runs one on a background thread for tests and the demo, and returns only once
every listener accepts connections. The collector never imports the query side: ``roomscope
serve`` (query.cli.serve) hands it the query API as an :data:`AppFactory`, which gets a
:class:`ReadAccess`, not the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import uvicorn

from .auth import Auth
from .errors import RoomscopeError, SettingsError
from .forwarder import Forwarder
from .grpc_receiver import create_grpc_server
from .http_protocol import guarded_protocol
from .http_receiver import OTLPHttpApp
from .ingest import Ingestor
from .sessions import SessionTracker
from .settings import Settings, load_settings
from .store import Job, Store, create_store
from .tagging import Tagger
from .writer import Writer

log = logging.getLogger("roomscope.server")


@dataclass(frozen=True)
class ReadAccess:
    """What an app on the query port may use of a running collector: read cursors of its store,
    whether it is ready and still accepting, and the token checker (None: auth is off)."""

    cursor: Callable[[], duckdb.DuckDBPyConnection]
    ready: Callable[[], bool]
    accepting: Callable[[], bool]
    auth: Auth | None


AppFactory = Callable[[ReadAccess], Any]  # an ASGI app for the query port


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the Collector owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without, uvicorn's separate header and body writes wait
    # for the client's delayed ACK (~40 ms per keep-alive response).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RoomscopeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _tls_files(settings: Settings) -> tuple[str, str] | None:
    """(cert, key) when tls.cert_file and tls.key_file are set, None when neither is."""
    cert, key = settings.get("tls.cert_file"), settings.get("tls.key_file")
    if not cert and not key:
        return None
    if not (cert and key):
        raise SettingsError("set both tls.cert_file and tls.key_file, or neither")
    for name, path in (("tls.cert_file", cert), ("tls.key_file", key)):
        if not Path(path).expanduser().is_file():
            raise SettingsError(f"{name}: no such file {path}")
    return str(Path(cert).expanduser()), str(Path(key).expanduser())


class Collector:
    """``api``: the app served on the query port (None: no query port). ``store``: the backend
    (default: the one the settings describe)."""

    def __init__(
        self,
        settings: Settings,
        *,
        api: AppFactory | None = None,
        store: Store | None = None,
    ):
        self.settings = settings
        self.api = api
        self.store: Store = store if store is not None else create_store(settings)
        self.writer: Writer | None = None
        self.jobs: list[Job] = []
        self.forwarder: Forwarder | None = None
        self.ingestor: Ingestor | None = None
        self.auth: Auth | None = Auth.from_settings(settings)  # None: auth.enabled is off
        self.tls = _tls_files(settings)
        self.ports: dict[str, int] = {}
        self._grpc = None
        self._http: list[tuple[_UvicornServer, socket.socket, asyncio.Task]] = []
        self._stop = asyncio.Event()
        self.started = False

    @property
    def ready(self) -> bool:
        return (
            self.started
            and self.ingestor is not None
            and self.ingestor.accepting
            and self.writer is not None
            and self.writer.healthy
        )

    async def start(self) -> None:
        s = self.settings
        await asyncio.to_thread(self.store.open)
        tracker = await asyncio.to_thread(SessionTracker.from_settings, s, self.store)
        self.writer = Writer.from_settings(self.store, s, tracker)
        self.writer.start()
        self.jobs = self.store.jobs(self.writer.run, tracker.forget, self.writer.busy)
        for job in self.jobs:
            job.start()
        self.forwarder = Forwarder.from_settings(self.store, self.writer.run, s)
        if self.forwarder is not None:  # the queue is open before anything is received
            await asyncio.to_thread(self.forwarder.start)
        self.ingestor = Ingestor(
            self.writer,
            Tagger.from_settings(s),
            fast_decode=s.get("ingest.fast_decode"),
            inline_bytes=s.get("ingest.inline_decode_bytes"),
        )
        host = s.get("server.host")
        max_body = s.get("limits.max_body_bytes")
        tls = None
        if self.tls is not None:
            tls = (Path(self.tls[1]).read_bytes(), Path(self.tls[0]).read_bytes())
        self._grpc, self.ports["grpc"] = create_grpc_server(
            self.ingestor, host, s.get("server.grpc_port"), max_body, self.auth, tls
        )
        await self._grpc.start()
        otlp_app = OTLPHttpApp(
            self.ingestor,
            max_body,
            request_timeout=s.get("limits.request_timeout"),
            auth=self.auth,
        )
        await self._start_http("http", otlp_app, host, s.get("server.http_port"))
        if self.api is not None:
            api_app = self.api(self.read_access())
            await self._start_http(
                "api", api_app, s.get("server.api_host"), s.get("server.api_port")
            )
        self.started = True
        log.info(
            "roomscope collecting into %s: OTLP/gRPC %s:%d, OTLP/HTTP %s:%d, API %s://%s:%d%s",
            self.store.location,
            host,
            self.ports["grpc"],
            host,
            self.ports["http"],
            "https" if self.tls else "http",
            s.get("server.api_host"),
            self.ports.get("api", 0),
            " (auth on)" if self.auth else "",
        )

    def read_access(self) -> ReadAccess:
        return ReadAccess(
            cursor=self.store.cursor,
            ready=lambda: self.ready,
            accepting=lambda: self.ingestor is None or self.ingestor.accepting,
            auth=self.auth,
        )

    async def _start_http(self, name: str, app: Any, host: str, port: int) -> None:
        sock = _bind(host, port)
        self.ports[name] = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            http=guarded_protocol(self.settings.get("limits.header_timeout")),
            timeout_keep_alive=30,
            timeout_graceful_shutdown=int(self.settings.get("server.shutdown_timeout")),
            limit_concurrency=1000,
            ssl_certfile=self.tls[0] if self.tls else None,
            ssl_keyfile=self.tls[1] if self.tls else None,
        )
        config.load()
        server = _UvicornServer(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        task = asyncio.create_task(server.main_loop(), name=f"roomscope-{name}")
        self._http.append((server, sock, task))

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Stop accepting, finish and commit what was acknowledged, close the store.

        Bounded by ``server.shutdown_timeout`` as a whole: the receivers (stopped together) get
        until the deadline to finish in-flight requests, whose records the writer commits
        meanwhile; then the writer gets what is left to commit anything still queued. Requests
        arriving during shutdown are refused (HTTP 503, gRPC UNAVAILABLE, or no connection).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.get("server.shutdown_timeout")

        def left() -> float:
            return max(0.1, deadline - loop.time())

        if self.ingestor is not None:
            self.ingestor.accepting = False
        steps = [self._stop_http(server, sock, task, left) for server, sock, task in self._http]
        if self._grpc is not None:
            steps.append(self._grpc.stop(grace=left()))
        await asyncio.gather(*steps, return_exceptions=True)
        self._http.clear()
        self._grpc = None
        writer_done = True
        for job in self.jobs:
            await asyncio.to_thread(job.stop)
        if self.forwarder is not None:  # what it has not sent stays queued in the store
            await asyncio.to_thread(self.forwarder.stop, min(left(), 5.0))
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop, left())
            writer_done = not self.writer.running
        if self.ingestor is not None:
            self.ingestor.close()
        if writer_done:
            await asyncio.to_thread(self.store.close)
        else:  # everything acked is committed; the WAL covers a commit cut short by the exit
            log.error("writer did not finish within server.shutdown_timeout; exiting anyway")
        self.started = False

    async def _stop_http(
        self, server: _UvicornServer, sock: socket.socket, task: asyncio.Task, left: Any
    ) -> None:
        server.should_exit = True
        server.config.timeout_graceful_shutdown = left()  # type: ignore[assignment]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, left())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.shutdown(sockets=[sock]), left() + 0.5)

    async def serve(self, on_ready: Callable[[Collector], None] | None = None) -> None:
        """Run until SIGINT/SIGTERM (or request_stop), then shut down cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.start()
            if on_ready is not None:
                on_ready(self)
            await self._stop.wait()
            log.info("shutting down")
        finally:
            await self.stop()


class CollectorThread:
    """A Collector on its own thread and event loop (tests, demo). Use as a context manager."""

    def __init__(self, collector: Collector):
        self.collector = collector
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="roomscope-collector", daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        c = self.collector
        c._stop = asyncio.Event()
        try:
            await c.start()
            self._ready.set()
            await c._stop.wait()
        finally:
            await c.stop()

    def start(self, timeout: float = 30) -> Collector:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("collector did not start")
        if self._error is not None:
            raise self._error
        return self.collector

    def stop(self, timeout: float = 30) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.collector._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ports(self) -> dict[str, int]:
        return self.collector.ports


def loopback_settings(db: str | Path, **overrides: Any) -> Settings:
    """Settings for a collector on 127.0.0.1 with free ports and the given store (tests, demo).

    Environment variables are ignored, so a user's ROOMSCOPE_* cannot leak in.
    """
    flags: dict[str, Any] = {
        "store.path": str(db),
        "server.host": "127.0.0.1",
        "server.grpc_port": 0,
        "server.http_port": 0,
        "server.api_port": 0,
        "server.api_host": "127.0.0.1",
    }
    flags.update(overrides)
    return load_settings(env={}, flags=flags)
