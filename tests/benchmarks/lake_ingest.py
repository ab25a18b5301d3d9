"""Scale-out ingest benchmark (not run by pytest or CI): two `roomscope serve` replicas on one
DuckLake against one DuckDB-file collector, in the same sitting, over OTLP/HTTP protobuf.

Starts a throwaway PostgreSQL (tests/postgres.py) for the lake's catalog, then alternates
rounds: the file collector fed by --connections connections, then two (--replicas) replicas on
one lake (a new lake each round, files in a temp directory) sharing the connections. Each round
counts the spans of 200 answers, stops the servers, checks the store holds exactly that many
(every ack committed) and prints acked spans/s and the collectors' CPU time a span. Replicas
also print their commits, the time they held the session lock and where a turn spent it (ms a
commit: reading the other's session rows, writing the records, the session rows, the journal,
the COMMIT), from which the scaling estimate in docs/scale-out.md comes.

    python tests/benchmarks/lake_ingest.py --rounds 2 --seconds 15 --connections 8
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
sys.path.insert(0, str(ROOT))

from ingest import Server, Stats, http_sender  # noqa: E402
from otlp_factory import trace_request  # noqa: E402
from postgres import running_postgres  # noqa: E402

from collector.store.reads import LakeConfig, open_lake_reader  # noqa: E402


def feed(targets: list[str], connections: int, bodies: list[bytes], spans: int, seconds: float):
    stats = Stats()
    stop = threading.Event()
    threads = [
        threading.Thread(target=http_sender, args=(t, bodies, spans, stop, stats), daemon=True)
        for t in targets
        for _ in range(connections)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120)
    return stats, time.perf_counter() - t0


def lake_summary(server: Server) -> tuple[int, float, dict[str, float]]:
    """(commits, seconds holding the session lock, seconds by phase of the turns) from a
    stopped replica's log."""
    for line in server.lines:
        m = re.search(r"lake: (\d+) commits.* holding the lock ([\d.]+) s \(([^)]*)\)", line)
        if m:
            phases = {k: float(v) for k, v in (p.split() for p in m.group(3).split(", "))}
            return int(m.group(1)), float(m.group(2)), phases
    return 0, 0.0, {}


def cpu_seconds(server: Server) -> float:
    """User + system CPU time the server process used so far (Linux /proc)."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_file(workdir: Path, args, bodies, spans) -> float:
    (workdir / "file").mkdir(parents=True)
    server = Server(workdir / "file", {})
    started = cpu_seconds(server)
    stats, elapsed = feed(
        [f"http://127.0.0.1:{server.ports['http']}"], args.connections, bodies, spans, args.seconds
    )
    cpu = cpu_seconds(server) - started
    server.stop()
    stored = server.count()
    assert stored == stats.acked_spans, (stored, stats.acked_spans)
    rate = stats.acked_spans / elapsed
    print(
        f"file : {rate:9,.0f} spans/s acked ({dict(stats.statuses)}), stored = acked;"
        f" collector CPU {cpu / max(stats.acked_spans, 1) * 1e6:.1f} us a span",
        flush=True,
    )
    return rate


def round_lake(workdir: Path, pg, n: int, args, bodies, spans) -> float:
    catalog = pg.create_database(f"bench{n}")
    data = workdir / f"lake{n}"
    data.mkdir()
    env = {
        "ROOMSCOPE_STORE_BACKEND": "ducklake",
        "ROOMSCOPE_STORE_CATALOG": catalog,
        "ROOMSCOPE_STORE_DATA_PATH": str(data),
    }
    for i in range(args.replicas):
        (workdir / f"r{n}-{i}").mkdir()
    replicas = [Server(workdir / f"r{n}-{i}", env) for i in range(args.replicas)]
    targets = [f"http://127.0.0.1:{r.ports['http']}" for r in replicas]
    started = sum(cpu_seconds(r) for r in replicas)
    stats, elapsed = feed(targets, args.connections // args.replicas, bodies, spans, args.seconds)
    cpu = sum(cpu_seconds(r) for r in replicas) - started
    for r in replicas:
        r.stop()
    con = open_lake_reader(LakeConfig(catalog, str(data)), "1GiB")
    stored = con.execute("SELECT count(*) FROM span_data").fetchone()[0]
    files = con.execute("SELECT count(*) FROM ducklake_list_files('lake', 'span_data')").fetchone()[
        0
    ]
    con.close()
    assert stored == stats.acked_spans, (stored, stats.acked_spans)
    rate = stats.acked_spans / elapsed
    commits = [lake_summary(r) for r in replicas]
    total = sum(c for c, _, _ in commits)
    held = sum(h for _, h, _ in commits)
    per = held / total * 1000 if total else 0.0
    phases: dict[str, float] = {}
    for _, _, p in commits:
        for k, v in p.items():
            phases[k] = phases.get(k, 0.0) + v
    split = ", ".join(f"{k} {v / max(total, 1) * 1000:.1f}" for k, v in phases.items())
    print(
        f"lake : {rate:9,.0f} spans/s acked by {args.replicas} replica(s)"
        f" ({dict(stats.statuses)}), stored = acked; {total} commits"
        f" ({stats.acked_spans / max(total, 1):,.0f} spans each), {files} files; session lock"
        f" held {held:.1f} s of {args.replicas * elapsed:.1f} replica-s"
        f" = {per:.1f} ms a commit ({split}); replicas' CPU"
        f" {cpu / max(stats.acked_spans, 1) * 1e6:.1f} us a span",
        flush=True,
    )
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--replicas", type=int, default=2, help="1: a replica's turns uncontended")
    ap.add_argument("--spans-per-request", type=int, default=512)
    args = ap.parse_args()
    spans = args.spans_per_request
    bodies = [trace_request(spans, seed=i).SerializeToString() for i in range(16)]
    workdir = Path(tempfile.mkdtemp(prefix="roomscope-lake-bench-"))
    file_rates, lake_rates = [], []
    with running_postgres() as pg:
        for n in range(args.rounds):
            file_rates.append(round_file(workdir / f"f{n}", args, bodies, spans))
            lake_rates.append(round_lake(workdir, pg, n, args, bodies, spans))
    ratios = [lake / file for lake, file in zip(lake_rates, file_rates, strict=True)]
    print(
        f"median: file {statistics.median(file_rates):,.0f}, {args.replicas} replica(s)"
        f" {statistics.median(lake_rates):,.0f} spans/s; lake/file per round"
        f" {', '.join(f'{r:.2f}' for r in ratios)}"
    )


if __name__ == "__main__":
    main()
