"""Soak benchmark (not run by pytest or CI): a collector under steady OTLP/HTTP load, sampled.

Starts `roomscope serve` in its own process (free ports, store in a temp dir, settings from
--env), sends 512-span requests (ingest.py's, rebuilt every few seconds so their times stay
current and retention sees live data; 16 rooms, each with a new explicit session every
minute) from 8 connections paced to --rate spans/s, and every --interval seconds samples: the
collector's RSS (/proc: then, and the highest of samples every 0.2 s since the last sample),
the store file's and its WAL's size, the acked ingest rate, the
requests' p99 latency and non-200 answers, and the latency of the seed questions through the
API (median of --query-runs runs each):

- errors:        GET /api/v1/traces?attrs=status=error&limit=20   (the newest errors)
- room_slow:     GET /api/v1/traces?room=room-3&min_duration=1s&limit=20   (a room's slow spans)
- sessions:      GET /api/v1/sessions   (session list)
- session_page:  GET /api/v1/sessions/{id}/spans?limit=100   (the first page of room-3's
                 newest session, ~1 minute of its records)

The last --ledger seconds of requests carry the project ``ledger``; after the run the store
is opened and its ``ledger`` spans counted: every acked one must be there exactly once (the
retention window must be longer than the ledger).

It writes the samples as CSV (--csv) and, if matplotlib is importable, a PNG chart of every
series over time (--png; `pip install -e '.[bench]'` for the chart: matplotlib is an optional
extra, no dependency of roomscope), the memory budget drawn beside the RSS. At the end it
prints issue 27's checks: the RSS peak against the budget + 300 MB, each query's p50 in the
last 10 minutes against minutes W..W+10 (W: the retention window, from --env), the file's
size after the window filled (±10 % of its median), and the ledger.

    python tests/benchmarks/soak.py --seconds 300 --rate 40000 --env ROOMSCOPE_RETENTION_MAX_AGE=2m
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

from collector import durations
from collector.setting_values import size_bytes
from collector.settings import load_settings

QUERIES = {
    "errors": "/api/v1/traces?attrs=status%3Derror&limit=20",
    "room_slow": "/api/v1/traces?room=room-3&min_duration=1s&limit=20",
    "sessions": "/api/v1/sessions",
    "session_page": None,  # the newest session of room-3, looked up at each sample
}
ROOMS = 16
SESSION_SECONDS = 60  # each room starts a new session this often
FIELDS = ["t_s", "rss_mb", "rss_peak_mb", "file_mb", "wal_mb", "spans_per_s", "p99_ms", "refused"]
FIELDS += [f"{q}_ms" for q in QUERIES]


class Bodies:
    """One pre-serialized request of ``spans`` spans per room, rebuilt every ``refresh``
    seconds (new ids, current times, the session of the minute) by a thread of its own, so
    senders never build one. Once ``ledger`` is set, new bodies carry the project ``ledger``;
    ``current`` is (is a ledger body, bodies)."""

    def __init__(self, spans: int, refresh: float, stop: threading.Event):
        self.spans, self.refresh, self.stop = spans, refresh, stop
        self.generation = 0
        self.ledger = threading.Event()
        self.current = self._build()
        threading.Thread(target=self._loop, daemon=True).start()

    def _build(self) -> tuple[bool, list[bytes]]:
        g = self.generation
        self.generation += 1
        ledger = self.ledger.is_set()
        minute = int(time.time() // SESSION_SECONDS)
        bodies = [
            trace_request(
                self.spans,
                room=f"room-{r}",
                session=f"room-{r}-{minute}",
                project="ledger" if ledger else "acme",
                seed=g * ROOMS + r,
            ).SerializeToString()
            for r in range(ROOMS)
        ]
        return ledger, bodies

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
        ledger, current = bodies.current
        body = current[i % len(current)]
        i += 1
        t0 = time.perf_counter()
        status = poster.post(body)
        acked = bodies.spans if status == "200" else 0
        stats.add(status, acked, time.perf_counter() - t0)
        if ledger and acked:
            with stats.lock:
                stats.ledger += acked
    poster.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssPeak:
    """The process's highest RSS between two :meth:`take` calls, sampled every 0.2 s by a
    thread of its own (a sample every --interval seconds alone would miss short peaks)."""

    def __init__(self, pid: int, stop: threading.Event):
        self.pid, self.stop, self.peak = pid, stop, 0.0
        self.lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            try:
                now = rss_mb(self.pid)
            except OSError:
                return
            with self.lock:
                self.peak = max(self.peak, now)

    def take(self) -> float:
        with self.lock:
            peak, self.peak = self.peak, 0.0
        return peak


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
        ("memory (MiB) and disk (MB)", ["rss_peak_mb", "file_mb", "wal_mb"]),
        ("ingest (spans/s)", ["spans_per_s"]),
        ("OTLP request p99 (ms)", ["p99_ms"]),
        ("seed queries, median (ms)", [f"{q}_ms" for q in QUERIES]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 10), sharex=True)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for k in keys:
            ax.plot(t, [r[k] for r in rows], label=k)
        if keys[0] == "rss_peak_mb" and budget_mb is not None:
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


def newest_session_page(api: str) -> str | None:
    """The path of the first page of room-3's newest session's spans (None: none yet)."""
    u = urllib.parse.urlsplit(api)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        conn.request("GET", "/api/v1/sessions?room=room-3&limit=1")
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    sessions = body.get("sessions") or []
    if resp.status != 200 or not sessions:
        return None
    sid = urllib.parse.quote(sessions[0]["session_id"], safe="")
    return f"/api/v1/sessions/{sid}/spans?limit=100"


def p50(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if r[key] == r[key]]  # NaN: a failed query
    return statistics.median(values) if values else float("nan")


def summarize(
    rows: list[dict[str, float]], budget_mb: float, window_s: float, ledger: tuple[int, int]
) -> None:
    """Issue 27's checks, printed; see the module's docstring."""
    if not rows:
        return
    end = rows[-1]["t_s"]
    peak = max(max(r["rss_mb"], r["rss_peak_mb"]) for r in rows)
    verdict = "ok" if peak <= budget_mb + 300 else "OVER"
    print(f"RSS peak {peak:.0f} MiB; budget {budget_mb:.0f} + 300 MiB: {verdict}")
    print(f"WAL peak {max(r['wal_mb'] for r in rows):.0f} MB")
    filled = [r for r in rows if r["t_s"] >= window_s + 60]
    if filled:
        sizes = [r["file_mb"] for r in filled]
        mid = statistics.median(sizes)
        spread = max(abs(x - mid) / mid for x in sizes) if mid else float("nan")
        verdict = "ok" if spread <= 0.10 else "NOT FLAT"
        print(
            f"file after the window filled: {min(sizes):.0f}-{max(sizes):.0f} MB, median"
            f" {mid:.0f} (±{100 * spread:.1f} %): {verdict}"
        )
    early = [r for r in rows if window_s <= r["t_s"] < window_s + 600]
    late = [r for r in rows if r["t_s"] > end - 600]
    span = f"{window_s / 60:.0f}-{(window_s + 600) / 60:.0f} min"
    for q in QUERIES:
        a, b = p50(early, f"{q}_ms"), p50(late, f"{q}_ms")
        verdict = "ok" if b <= 1.5 * a else "GREW"
        print(f"{q}: p50 {span} {a:.0f} ms, last 10 min {b:.0f} ms ({b / a:.2f}x): {verdict}")
    acked, stored = ledger
    verdict = "ok" if stored == acked else ("MISSING" if stored < acked else "extra")
    print(f"ledger: {acked:,} spans acked, {stored:,} stored: {verdict}")


def window_seconds(env: dict[str, str]) -> float:
    """The collector's retention window (retention.max_age) in seconds."""
    return durations.seconds(load_settings(env=env).get("retention.max_age"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--rate", type=float, default=40_000, help="offered spans/s")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--spans-per-request", type=int, default=512)
    ap.add_argument("--refresh", type=float, default=5.0, help="seconds between body rebuilds")
    ap.add_argument("--query-runs", type=int, default=3)
    ap.add_argument("--ledger", type=float, default=60.0, help="seconds of ledger requests")
    ap.add_argument("--csv", default="soak.csv")
    ap.add_argument("--png", default="soak.png")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    ap.add_argument("--log", default=None, help="write the server's log lines to this file")
    ap.add_argument("--keep", action="store_true", help="keep the store's folder afterwards")
    args = ap.parse_args()

    stop = threading.Event()
    bodies = Bodies(args.spans_per_request, args.refresh, stop)
    workdir = Path(tempfile.mkdtemp(prefix="roomscope-soak-"))
    server_env = dict(kv.split("=", 1) for kv in args.env)
    server = Server(workdir, server_env)
    rows: list[dict[str, float]] = []
    try:
        api = api_url(server)
        target = f"http://127.0.0.1:{server.ports['http']}"
        wal = Path(str(server.db) + ".wal")
        stats = Stats()
        rss_peak = RssPeak(server.proc.pid, stop)
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
            left = args.seconds - (now - t0)
            if left <= args.ledger + args.refresh:
                bodies.ledger.set()
            stop.wait(min(args.interval, left))
            with stats.lock:
                acked, lat = stats.acked_spans, stats.latencies[last_n:]
                last_n = len(stats.latencies)
                refused = sum(n for s, n in stats.statuses.items() if s != "200")
            now = time.perf_counter()
            lat.sort()
            row = {
                "t_s": now - t0,
                "rss_mb": rss_mb(server.proc.pid),
                "rss_peak_mb": rss_peak.take(),
                "file_mb": size_mb(server.db),
                "wal_mb": size_mb(wal),
                "spans_per_s": (acked - last_acked) / (now - last_t),
                "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan"),
                "refused": refused,
            }
            for name, path in QUERIES.items():
                path = path or newest_session_page(api)
                row[f"{name}_ms"] = query_ms(api, path, args.query_runs) if path else float("nan")
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
        print(f"server exited {server.stop()}")
        if args.log:
            Path(args.log).write_text("".join(server.lines))
        stored = server.count("spans WHERE project = 'ledger'")
        budget = memory_budget_mb(server_env)
        summarize(rows, budget, window_seconds(server_env), (stats.ledger, stored))
        chart(rows, args.png, budget)
    finally:
        stop.set()
        if server.proc.poll() is None:
            server.proc.kill()
        if args.keep:
            print(f"store kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
