"""How the CLI reaches the data: a store file opened read-only, or a running collector's API.

Both sources have the :class:`~query.library.reader.Reader` methods and return the same JSON
objects.
Default (neither ``--db`` nor ``--server``): the configured server if it answers ``/healthz``
within ``query.probe_timeout``, else the configured store file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import httpx

from collector.errors import RoomscopeError, StoreError
from collector.settings import Settings, load_settings
from collector.store.reads import (
    LakeConfig,
    StoreInUse,
    open_lake_reader,
    open_reader,
    parse_store,
)

from ..library.errors import NotFound, QueryError, SourceError
from ..library.filters import LogFilter, MetricFilter, PageFilter, SessionFilter, SpanFilter
from ..library.reader import FIRST_PAGE, Reader, Result
from ..library.session_stream import Relieve
from ..library.usage import Prices, UsageFilter, parse_prices
from .holder import in_use_message

API = "/api/v1"


def segment(text: str) -> str:
    """``text`` as one URL path segment (SPEC 3: ids may hold ``/``, ``..``, ``#``, ``?``,
    spaces, any Unicode): every reserved character percent-encoded, and the dots of an id that
    is exactly ``.`` or ``..`` too, which an HTTP client would otherwise resolve away."""
    quoted = quote(text, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


# The spans of a batch a store file's stream reads at most: the time of a 100,000-span session's
# export is the same from 1,000 to 5,000; the peak RSS 235 MB at 1,000, 269 MB at 5,000.
STREAM_BATCH = 1_000


class LocalSource(Reader):
    """A store file opened read-only (no collector may hold it), or a lake (``lake``; its
    collectors may be writing it meanwhile)."""

    def __init__(
        self,
        path: str,
        *,
        default_limit: int,
        timeout: float,
        max_rows: int,
        idle_timeout: float,
        prices: Prices,
        memory_limit: str,
        stream_memory_limit: str,
        lake: LakeConfig | None = None,
    ):
        self.path = path
        self.stream_memory_limit = stream_memory_limit.replace("'", "")
        if lake is None and path != ":memory:" and not Path(path).expanduser().is_file():
            raise SourceError(
                f"store file {path} does not exist; start a collector (roomscope serve), pass"
                " --db PATH, or query a running collector with --server URL"
            )
        try:
            con = open_lake_reader(lake, memory_limit) if lake else open_reader(path, memory_limit)
        except StoreInUse:
            raise  # open_source names the API to query instead (holder.in_use_message)
        except StoreError as exc:
            raise SourceError(str(exc)) from None
        super().__init__(
            con,
            default_limit=default_limit,
            timeout=timeout,
            max_rows=max_rows,
            idle_timeout=idle_timeout,
            prices=prices,
        )

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or name in ("close", "con") or not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except duckdb.Error as exc:
                raise self._error(exc) from None

        return guarded

    def _error(self, exc: duckdb.Error) -> RoomscopeError:
        if isinstance(exc, duckdb.CatalogException):
            return SourceError(f"{self.path} is not a roomscope store (its tables are missing)")
        return QueryError(f"cannot read {self.path}: {str(exc).splitlines()[0]}")

    def session_spans_stream(
        self, session_id: str, f: SpanFilter, batch: int, relieve: Relieve | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """As :meth:`Reader.session_spans_stream`, read under DuckDB's budget
        ``stream_memory_limit`` (``query.stream_memory_limit``): its cache then holds no more
        than that of the session's blocks, however many it reads. A batch that needs more is
        read, and the rest after it, in the connection's own budget (``store.memory_limit``).
        Batches of at most :data:`STREAM_BATCH` spans."""
        batch = min(batch, STREAM_BATCH)
        (budget,) = self.con.execute("SELECT current_setting('memory_limit')").fetchone()
        raised: list[bool] = []

        def restore() -> bool:
            if raised:
                return False
            raised.append(True)
            self.con.execute(f"SET memory_limit = '{budget}'")
            return True

        self.con.execute(f"SET memory_limit = '{self.stream_memory_limit}'")
        try:
            yield from super().session_spans_stream(session_id, f, batch, relieve or restore)
        except duckdb.Error as exc:
            raise self._error(exc) from None
        finally:
            with suppress(duckdb.Error):  # closed meanwhile: nothing to restore
                restore()


class RemoteSource:
    """A running collector's REST API (SPEC 6)."""

    def __init__(self, url: str, *, timeout: float, token: str | None):
        self.url = url.rstrip("/")
        # A query token goes as a bearer header; https uses SSL_CERT_FILE for a private CA.
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def _call(self, method: str, path: str, **kwargs: Any) -> Result:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach roomscope server at {self.url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 404:
            raise NotFound(body.get("error") or f"not found: {path}")
        if response.status_code >= 400:
            message = body.get("error") or f"HTTP {response.status_code}"
            raise QueryError(f"server at {self.url}: {message}")
        return body

    def _get(self, path: str, params: list[tuple[str, str]] | None = None) -> Result:
        return self._call("GET", API + path, params=params or [])

    def sessions(self, f: SessionFilter) -> Result:
        return self._get("/sessions", f.to_params())

    def session(self, session_id: str) -> Result:
        return self._get(f"/sessions/{segment(session_id)}")

    def session_events(self, session_id: str, page: PageFilter = FIRST_PAGE) -> Result:
        return self._get(f"/sessions/{segment(session_id)}/events", page.to_params())

    def session_spans(self, session_id: str, f: SpanFilter) -> Result:
        return self._get(f"/sessions/{segment(session_id)}/spans", f.to_params())

    def session_spans_stream(
        self, session_id: str, f: SpanFilter, batch: int
    ) -> Iterator[list[dict[str, Any]]]:
        """The server's pages of the session's spans, ``batch`` spans each, one held at a time."""
        cursor = None
        while True:
            page = self.session_spans(session_id, replace(f, limit=batch, cursor=cursor))
            cursor, spans = page.get("next"), page["spans"]
            del page
            yield spans
            del spans
            if cursor is None:
                return

    def session_logs(self, session_id: str, f: LogFilter) -> Result:
        return self._get(f"/sessions/{segment(session_id)}/logs", f.to_params())

    def session_metrics(self, session_id: str, f: MetricFilter) -> Result:
        return self._get(f"/sessions/{segment(session_id)}/metrics", f.to_params())

    def export_session(
        self, session_id: str, fmt: str, tagger: Any = None, table: str = "spans"
    ) -> Iterator[bytes]:
        """The server's export of the session (its own tagging rules), streamed."""
        params = {"format": fmt, **({"table": table} if fmt == "parquet" else {})}
        path = f"{API}/sessions/{quote(session_id, safe='')}/export"
        try:
            response = self.client.send(
                self.client.build_request("GET", path, params=params), stream=True
            )
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach roomscope server at {self.url}: {exc}") from None
        if response.status_code >= 400:
            response.read()
            response.close()
            try:
                message = response.json().get("error")
            except ValueError:
                message = None
            if response.status_code == 404:
                raise NotFound(message or f"not found: {path}")
            raise QueryError(f"server at {self.url}: {message or f'HTTP {response.status_code}'}")

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.iter_bytes()
            except httpx.HTTPError as exc:
                raise SourceError(f"export from {self.url} broke off: {exc}") from None
            finally:
                response.close()

        return chunks()

    def traces(self, f: SpanFilter) -> Result:
        return self._get("/traces", f.to_params())

    def trace(self, trace_id: str) -> Result:
        return self._get(f"/traces/{segment(trace_id)}")

    def rooms(self, page: PageFilter = FIRST_PAGE) -> Result:
        return self._get("/rooms", page.to_params())

    def usage(self, f: UsageFilter) -> Result:
        return self._get("/usage", f.to_params())

    def status(self) -> Result:
        return self._get("/status")

    def sql(self, text: str) -> Result:
        return self._call("POST", API + "/sql", json={"sql": text})

    def close(self) -> None:
        self.client.close()


Source = LocalSource | RemoteSource


def _answers(url: str, timeout: float) -> bool:
    try:
        return httpx.get(url.rstrip("/") + "/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def settings_for(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except RoomscopeError as exc:
        raise SourceError(str(exc)) from None


def configured_url(settings: Settings) -> str:
    """The query API the settings point at (server.api_host, server.api_port)."""
    host = settings.get("server.api_host")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.get('server.api_port')}"


def open_source(
    config: str | None = None,
    db: str | None = None,
    server: str | None = None,
    token: str | None = None,
    store: str | None = None,
    data_path: str | None = None,
) -> Source:
    """The source the global options (or, failing them, the configuration) point at: ``store``
    and ``data_path`` name a lake (``--store ducklake:postgresql://... --data-path PATH``)."""
    settings = settings_for(config)
    timeout = settings.get("query.timeout")

    url = configured_url(settings)
    probe = settings.get("query.probe_timeout")

    def local(path: str, lake: LakeConfig | None = None) -> LocalSource:
        try:
            return LocalSource(
                lake.location if lake else path,
                lake=lake,
                default_limit=settings.get("query.default_limit"),
                timeout=timeout,
                max_rows=settings.get("query.max_rows"),
                idle_timeout=settings.get("sessions.idle_timeout"),
                prices=parse_prices(settings.get("usage.prices")),
                memory_limit=settings.get("store.memory_limit"),
                stream_memory_limit=settings.get("query.stream_memory_limit"),
            )
        except StoreInUse as exc:
            raise SourceError(in_use_message(path, exc.pid, url, probe)) from None

    if server:
        return RemoteSource(server, timeout=timeout + 30, token=token)
    if db:
        return local(db)
    if store:
        return local("", _lake(settings, store, data_path))
    if _answers(url, probe):
        return RemoteSource(url, timeout=timeout + 30, token=token)
    if settings.get("store.backend") == "ducklake":
        return local("", _lake(settings, None, data_path))
    return local(settings.get("store.path"))


def _lake(settings: Settings, store: str | None, data_path: str | None) -> LakeConfig:
    """The lake of ``--store``/``--data-path``, else of the settings (``store.catalog``, …)."""
    try:
        catalog = parse_store(store) if store else settings.get("store.catalog")
    except StoreError as exc:
        raise SourceError(str(exc)) from None
    lake = LakeConfig(
        catalog,
        data_path or settings.get("store.data_path"),
        settings.get("store.s3_endpoint"),
        settings.get("store.s3_region"),
    )
    try:
        lake.check()
    except StoreError as exc:
        raise SourceError(str(exc)) from None
    return lake
