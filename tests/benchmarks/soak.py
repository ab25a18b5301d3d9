"""Soak benchmark (not run by pytest or CI): a collector under steady OTLP/HTTP load, sampled.

Starts `roomscope serve` in its own process (free ports, store in a temp dir, settings from
--env), sends 512-span requests (ingest.py's, rebuilt every few seconds so their times stay
current and retention sees live data) from 8 connections paced to --rate spans/s, and every
--interval seconds samples: the collector's RSS (/proc), the store file's and its WAL's size,
the acked ingest rate, the requests' p99 latency and non-200 answers, and the latency of the
seed queries through the API (median of --query-runs runs each):

- errors:     GET /api/v1/traces?attrs=status=error&limit=20   (the newest errors)
- room_slow:  GET /api/v1/traces?room=lobby&min_duration=1s&limit=20   (a room's slow spans)
- sessions:   GET /api/v1/sessions   (session list)

It writes the samples as CSV (--csv) and, if matplotlib is importable, a PNG chart of every
series over time (--png; `pip install -e '.[bench]'` for the chart: matplotlib is an optional
extra, no dependency of roomscope), the memory budget drawn beside the RSS. At the end it
prints the RSS peak, the file size over time and each query's p50 in the first and the last
minute.

    python tests/benchmarks/soak.py --seconds 180 --rate 40000 --env ROOMSCOPE_RETENTION_MAX_AGE=2m
    python tests/benchmarks/soak.py --seconds 3600 --rate 45000 --interval 30 \\
        --env ROOMSCOPE_RETENTION_MAX_AGE=15m --env ROOMSCOPE_STORE_MEMORY_LIMIT=1GiB
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import ROOT, HttpPoster, Server, Stats

sys.path.insert(0, str(ROOT / "tests"))
from otlp_factory import trace_request

from collector.settings import load_settings
from collector.settings_table import size_bytes

QUERIES = {
    "errors": "/api/v1/traces?attrs=status%3Derror&limit=20",
    "room_slow": "/api/v1/traces?room=lobby&min_duration=1s&limit=20",
    "sessions": "/api/v1/sessions",
}
FIELDS = ["t_s", "rss_mb", "file_mb", "wal_mb", "spans_per_s", "p99_ms", "refused"]
FIELDS += [f"{q}_ms" for q in QUERIES]


class Bodies:
    """``count`` pre-serialized requests of ``spans`` spans, rebuilt every ``refresh`` seconds
    (new ids, current times) by a thread of its own, so senders never build one."""

    def __init__(self, count: int, spans: int, refresh: float, stop: threading.Event):
        self.count, self.spans, self.refresh, self.stop = count, spans, refresh, stop
        self.generation = 0
        self.current = self._build()
        threading.Thread(target=self._loop, daemon=True).start()

    def _build(self) -> list[bytes]:
        g = self.generation
        self.generation += 1
        seeds = range(g * self.count, (g + 1) * self.count)
        return [trace_request(self.spans, seed=s).SerializeToString() for s in seeds]

    def _loop(self) -> None:
        while not self.stop.wait(self.refresh):
            self.current = self._build()


def paced_sender(url: str, bodies: Bodies, per_second: float, stop: threading.Event, stats: Stats):
    """POST requests at ``per_second`` requests/s (as fast as answered when behind)."""
    poster = HttpPoster(url)
    i = 0
    due = time.perf_counter()
    while not stop.is_set():
        wait = due - time.perf_counter()
        if wait > 0 and stop.wait(wait):
            break
        due = max(due + 1 / per_second, time.perf_counter() - 1.0)  # no burst after a stall
        current = bodies.current
        body = current[i % len(current)]
        i += 1
        t0 = time.perf_counter()
        status = poster.post(body)
        stats.add(status, bodies.spans if status == "200" else 0, time.perf_counter() - t0)
    poster.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def query_ms(api: str, path: str, runs: int) -> float:
    """Median wall time of ``runs`` GETs of ``path`` (NaN if one fails)."""
    u = urllib.parse.urlsplit(api)
    times = []
    for _ in range(runs):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        t0 = time.perf_counter()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                print(f"  {path}: {resp.status} {body[:200]!r}", flush=True)
                return float("nan")
            json.loads(body)
        finally:
            conn.close()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def api_url(server: Server) -> str:
    """The query API's URL from the ready line."""
    for line in server.lines:
        if line.startswith("roomscope ready:"):
            parts = line.split()
            return parts[parts.index("API") + 1]
    raise SystemExit("no API in the ready line")


def chart(rows: list[dict[str, float]], path: str, budget_mb: float | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: pip install -e '.[bench]' (matplotlib)")
        return
    t = [r["t_s"] for r in rows]
    panels = [
        ("memory (MiB) and disk (MB)", ["rss_mb", "file_mb", "wal_mb"]),
        ("ingest (spans/s)", ["spans_per_s"]),
        ("OTLP request p99 (ms)", ["p99_ms"]),
        ("seed queries, median (ms)", [f"{q}_ms" for q in QUERIES]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 10), sharex=True)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for k in keys:
            ax.plot(t, [r[k] for r in rows], label=k)
        if keys[0] == "rss_mb" and budget_mb is not None:
            ax.axhline(budget_mb, linestyle="--", color="grey", label="store.memory_limit")
        ax.set_title(title)
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path)
    print(f"chart: {path}")


def memory_budget_mb(env: dict[str, str]) -> float:
    """The collector's store.memory_limit in MiB, as RSS is sampled (the default unless --env
    sets it)."""
    limit = load_settings(env=env).get("store.memory_limit")
    return size_bytes(limit) / 2**20


def summarize(rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    end = rows[-1]["t_s"]
    first = [r for r in rows if r["t_s"] <= 60]
    last = [r for r in rows if r["t_s"] > end - 60]
    print(f"RSS peak {max(r['rss_mb'] for r in rows):.0f} MB")
    print("file MB over time: " + ", ".join(f"{r['t_s']:.0f}s {r['file_mb']:.0f}" for r in rows))
    print(f"WAL peak {max(r['wal_mb'] for r in rows):.0f} MB")
    for q in QUERIES:
        a = statistics.median(r[f"{q}_ms"] for r in first)
        b = statistics.median(r[f"{q}_ms"] for r in last)
        print(f"{q}: p50 first minute {a:.0f} ms, last minute {b:.0f} ms ({b / a:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--rate", type=float, default=40_000, help="offered spans/s")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--spans-per-request", type=int, default=512)
    ap.add_argument("--refresh", type=float, default=5.0, help="seconds between body rebuilds")
    ap.add_argument("--query-runs", type=int, default=3)
    ap.add_argument("--csv", default="soak.csv")
    ap.add_argument("--png", default="soak.png")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    args = ap.parse_args()

    stop = threading.Event()
    bodies = Bodies(16, args.spans_per_request, args.refresh, stop)
    workdir = Path(tempfile.mkdtemp(prefix="roomscope-soak-"))
    server_env = dict(kv.split("=", 1) for kv in args.env)
    server = Server(workdir, server_env)
    rows: list[dict[str, float]] = []
    try:
        api = api_url(server)
        target = f"http://127.0.0.1:{server.ports['http']}"
        wal = Path(str(server.db) + ".wal")
        stats = Stats()
        per_conn = args.rate / args.spans_per_request / args.connections
        threads = [
            threading.Thread(
                target=paced_sender, args=(target, bodies, per_conn, stop, stats), daemon=True
            )
            for _ in range(args.connections)
        ]
        print(f"{args.rate:,.0f} spans/s offered for {args.seconds:.0f} s; {args.env}", flush=True)
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        acked_total = 0
        last_t, last_acked, last_n = t0, 0, 0
        while (now := time.perf_counter()) - t0 < args.seconds:
            stop.wait(min(args.interval, args.seconds - (now - t0)))
            with stats.lock:
                acked, lat = stats.acked_spans, stats.latencies[last_n:]
                last_n = len(stats.latencies)
                refused = sum(n for s, n in stats.statuses.items() if s != "200")
            now = time.perf_counter()
            lat.sort()
            row = {
                "t_s": now - t0,
                "rss_mb": rss_mb(server.proc.pid),
                "file_mb": size_mb(server.db),
                "wal_mb": size_mb(wal),
                "spans_per_s": (acked - last_acked) / (now - last_t),
                "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan"),
                "refused": refused,
            }
            for name, path in QUERIES.items():
                row[f"{name}_ms"] = query_ms(api, path, args.query_runs)
            last_t, last_acked, acked_total = now, acked, acked
            rows.append(row)
            print(", ".join(f"{k} {v:.0f}" for k, v in row.items()), flush=True)
        stop.set()
        for t in threads:
            t.join(120)
        print(f"acked {acked_total:,} spans; answers {dict(stats.statuses)}")
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
        print(f"samples: {args.csv}")
        summarize(rows)
        chart(rows, args.png, memory_budget_mb(server_env))
        print(f"server exited {server.stop()}")
    finally:
        stop.set()
        if server.proc.poll() is None:
            server.proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
