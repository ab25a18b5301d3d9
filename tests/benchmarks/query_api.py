"""The query benchmark's REST API timings (tests/benchmarks/query.py): the seed queries as HTTP
requests to the query port's real ASGI app, in process over a read-only connection to the
store (as tests/benchmarks/grafana.py), median of ``runs`` warm (one app, after one untimed
request) and cold (a fresh connection and app per request)."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from urllib.parse import quote

import duckdb

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from collector.settings import load_settings
from collector.store.reads import open_reader
from query.http.api import create_app


def file_connection(path: str) -> Callable[[], duckdb.DuckDBPyConnection]:
    """Read-only connections to the store file ``path``, with the default memory budget."""
    return lambda: open_reader(path, load_settings(env={}).get("store.memory_limit"))


class Side:
    """The read side a collector gives its API, over a new read-only connection."""

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection]):
        self.con = connect()
        self.cursor = self.con.cursor
        self.ready = lambda: True
        self.accepting = lambda: False
        self.auth = None


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


def _send(client: TestClient, path: str, params: dict):
    if "json" in params:
        r = client.post(path, json=params["json"])
    else:
        r = client.get(path, params=params)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r


def _timed(client: TestClient, path: str, params: dict) -> float:
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
        client = TestClient(create_app(side, settings))
        size = len(_send(client, url, params).content)  # untimed first run
        warm = [_timed(client, url, params) for _ in range(runs)]
        side.con.close()
        cold = []
        for _ in range(runs):
            side = Side(connect)
            client = TestClient(create_app(side, settings))
            cold.append(_timed(client, url, params))
            side.con.close()
        print(f"{label:<58} {size:>8} {statistics.median(warm):>8.1f}"
              f" {statistics.median(cold):>8.1f}", flush=True)  # fmt: skip
