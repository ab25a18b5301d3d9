"""Grafana endpoints benchmark (not run by pytest or CI): Tempo's ``/api/search`` and
``/api/v2/traces/{id}``, Jaeger's ``/api/traces``, over the query benchmark's store
(tests/benchmarks/query.py builds it), through the query port's real ASGI app in process.

    python tests/benchmarks/grafana.py --store /tmp/copy-of-10m.duckdb

Reads a COPY of the store (read-only). Median of 10 warm runs after one untimed run, on one
connection, as the query benchmark's "warm" column.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import warnings
from pathlib import Path

import duckdb

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.settings import load_settings  # noqa: E402
from collector.store.reads import open_reader  # noqa: E402
from query.http.api import create_app  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "query_benchmark", Path(__file__).with_name("query.py")
)
assert _spec is not None and _spec.loader is not None
query_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(query_benchmark)


class Side:
    def __init__(self, path: str):
        self.con = open_reader(path, load_settings(env={}).get("store.memory_limit"))
        self.cursor = self.con.cursor
        self.ready = lambda: True
        self.accepting = lambda: False
        self.auth = None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with duckdb.connect(args.store, read_only=True) as con:
        s = query_benchmark.pick_samples(con)
        (service,) = con.execute("SELECT service_name FROM span_data LIMIT 1").fetchone()
    client = TestClient(create_app(Side(args.store), load_settings(env={})))
    seed = f'{{ resource.room = "{s["room"]}" && duration > 1s && status = error }}'
    cases = [
        ("tempo /api/search  seed query", "/api/search", {"q": seed}, {}),
        ("tempo /api/search  {} (limit 20)", "/api/search", {"q": "{}"}, {}),
        (
            'tempo /api/search  { span.tool = "search" && kind = server }',
            "/api/search",
            {"q": '{ span.tool = "search" && kind = server }'},
            {},
        ),
        (
            "tempo /api/v2/traces/T (protobuf)",
            f"/api/v2/traces/{s['trace']}",
            {},
            {"Accept": "application/protobuf"},
        ),
        ("jaeger /api/traces/T", f"/api/traces/{s['trace']}", {}, {}),
        (
            "jaeger /api/traces service+tags (limit 20)",
            "/api/traces",
            {"service": service, "tags": '{"error": "true"}', "lookback": "2d"},
            {},
        ),
    ]
    print(f"store {args.store}; room={s['room']} trace={s['trace']}")
    print(f"{'request':<62} {'items':>5} {'median ms':>10}")
    for label, path, params, headers in cases:
        r = client.get(path, params=params, headers=headers)
        assert r.status_code == 200, (label, r.status_code, r.text[:200])
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            r = client.get(path, params=params, headers=headers)
            times.append((time.perf_counter() - t) * 1000)
        body = r.json() if "json" in r.headers["content-type"] else None
        items = len(body.get("traces") or body.get("data") or []) if body else len(r.content)
        print(f"{label:<62} {items:>5} {statistics.median(times):>10.1f}")


if __name__ == "__main__":
    main()
