"""The query benchmark's REST API timings (tests/benchmarks/query.py): the seed queries as HTTP
requests to the query port's real app, served by uvicorn (with the collector's HTTP protocol and
TCP_NODELAY, as ``roomscope serve``) on a free loopback port in a thread of this process, over a
read-only connection to the store; httpx sends them on one keep-alive connection. Median of
``runs`` warm (after one untimed request) and cold (the server's connection replaced by a fresh
one before each request: a running server whose DuckDB buffer cache is empty)."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import duckdb
import httpx
import uvicorn
from starlette.applications import Starlette

from collector.http_protocol import guarded_protocol
from collector.settings import Settings, load_settings
from collector.store.reads import open_reader
from query.http.api import create_app


def file_connection(path: str) -> Callable[[], duckdb.DuckDBPyConnection]:
    """Read-only connections to the store file ``path``, with the default memory budget."""
    return lambda: open_reader(path, load_settings(env={}).get("store.memory_limit"))


class Side:
    """The read side a collector gives its API, over a read-only connection from ``connect``."""

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection]):
        self.connect = connect
        self.con = connect()
        self.ready = lambda: True
        self.accepting = lambda: False
        self.auth = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def renew(self) -> None:
        """A fresh connection, DuckDB's buffer cache empty (the old one is closed first: a
        second connection to an open file shares its database and cache)."""
        self.con.close()
        self.con = self.connect()


@contextmanager
def serving(app: Starlette, settings: Settings) -> Iterator[httpx.Client]:
    """``app`` served by uvicorn on a free loopback port until the block ends: a client of it."""
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as collector/server.py
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        http=guarded_protocol(settings.get("limits.header_timeout")),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            while not server.started:  # readiness, then requests
                if not thread.is_alive():
                    raise RuntimeError("the benchmark's API server did not start")
                time.sleep(0.01)
            yield client
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def requests(s: dict, sql_count: Callable[[int | None], str]) -> list[tuple[str, str, dict]]:
    """(label, path, query parameters or {"json": body} for a POST) per seed query."""
    session = "/api/v1/sessions/" + quote(s["session"], safe="")
    return [
        ("1  traces?room=R&min_duration=1000&attrs=status=error", "/api/v1/traces",
         {"room": s["room"], "min_duration": "1000", "attrs": "status=error"}),
        ("2  traces?attrs=tool=search&limit=100", "/api/v1/traces",
         {"attrs": "tool=search", "limit": "100"}),
        ("3  sessions", "/api/v1/sessions", {}),
        ("3b sessions?room=R", "/api/v1/sessions", {"room": s["room"]}),
        ("4  sessions/S/spans (first page)", session + "/spans", {}),
        ("4b sessions/S", session, {}),
        ("4c sessions/S/events", session + "/events", {}),
        ("5  traces/T", "/api/v1/traces/" + s["trace"], {}),
        ("6  sessions/S/logs?severity=error", session + "/logs", {"severity": "error"}),
        ("8  POST sql count attributes['tool']", "/api/v1/sql", {"json": {"sql": sql_count(None)}}),
        ("8b   ... last 5 minutes", "/api/v1/sql", {"json": {"sql": sql_count(s["end"])}}),
    ]  # fmt: skip


def _send(client: httpx.Client, path: str, params: dict) -> httpx.Response:
    if "json" in params:
        r = client.post(path, json=params["json"])
    else:
        r = client.get(path, params=params)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r


def _timed(client: httpx.Client, path: str, params: dict) -> float:
    t = time.perf_counter()
    _send(client, path, params)
    return (time.perf_counter() - t) * 1000


def time_api(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    s: dict,
    runs: int,
    only: str | None,
    sql_count: Callable[[int | None], str],
) -> None:
    """The seed requests' medians, over connections from ``connect`` (file_connection, or a
    lake's: tests/benchmarks/lake_query.py)."""
    settings = load_settings(env={})
    print(f"{'REST API request':<58} {'bytes':>8} {'warm ms':>8} {'cold ms':>8}")
    for label, url, params in requests(s, sql_count):
        if only and not label.startswith(only):
            continue
        side = Side(connect)
        with serving(create_app(side, settings), settings) as client:
            size = len(_send(client, url, params).content)  # untimed first run
            warm = [_timed(client, url, params) for _ in range(runs)]
            cold = []
            for _ in range(runs):
                side.renew()
                cold.append(_timed(client, url, params))
        side.con.close()
        print(f"{label:<58} {size:>8} {statistics.median(warm):>8.1f}"
              f" {statistics.median(cold):>8.1f}", flush=True)  # fmt: skip
