"""Faults of a lake under load (not run by pytest or CI): SIGKILL of a replica, PostgreSQL
stopped, each checked for acknowledged records lost or duplicated.

Two `roomscope serve` replicas on one lake (a throwaway PostgreSQL, files in a temp dir) take
requests of --spans unique spans each (every request its own trace ids) from --connections
connections spread over the replicas. Meanwhile:

- ``kill``: replica 0 is SIGKILLed --kills times, --every seconds apart, and started again;
- ``pg``: PostgreSQL is stopped for --down seconds and started again (the replicas are not);
- ``maint``: the replica holding the maintenance lease (rounds every 2 s) is SIGKILLed in the
  middle of a merge (after its "merging adjacent files" log line, before "merged"); the other
  must take the lease over and merge, and a reader counts spans throughout.

Then every request's spans are counted in the lake: an acknowledged request must have each of
its spans exactly once; one that was not acknowledged (in flight at a kill, answered 503) all
or none of them (nothing half-visible) — at most once, as the client does not retry here.

    python tests/benchmarks/lake_faults.py kill --kills 3
    python tests/benchmarks/lake_faults.py pg --down 10
    python tests/benchmarks/lake_faults.py maint
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
sys.path.insert(0, str(ROOT))

from ingest import HttpPoster, Server  # noqa: E402
from otlp_factory import trace_request  # noqa: E402
from postgres import running_postgres  # noqa: E402

from collector.store.reads import LakeConfig, open_lake_reader  # noqa: E402


class Load:
    """Client threads posting unique requests to the replicas' current addresses."""

    def __init__(self, targets: list[str], connections: int, spans: int):
        self.targets = targets  # replaced in place when a replica restarts
        self.spans = spans
        self.lock = threading.Lock()
        self.next_seed = 0
        self.outcome: dict[int, str] = {}  # seed → status ("200", "503", an error name)
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(connections)
        ]

    def _run(self, i: int) -> None:
        posters: dict[str, HttpPoster] = {}
        while not self.stop.is_set():
            with self.lock:
                seed = self.next_seed
                self.next_seed += 1
            target = self.targets[(i + seed) % len(self.targets)]
            poster = posters.get(target) or posters.setdefault(target, HttpPoster(target))
            body = trace_request(self.spans, seed=1_000_000 + seed).SerializeToString()
            status = poster.post(body)
            with self.lock:
                self.outcome[seed] = status
            if status != "200":
                time.sleep(0.05)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)


def verify(load: Load, catalog: str, data: str) -> int:
    """Check every request's spans in the lake; returns the number of problems."""
    con = open_lake_reader(LakeConfig(catalog, data), "1GiB")
    stored = collections.Counter(
        dict(
            con.execute("SELECT trace_id || span_id, count(*) FROM span_data GROUP BY 1").fetchall()
        )
    )
    con.close()
    problems = 0
    counts = collections.Counter()
    for seed, status in load.outcome.items():
        req = trace_request(load.spans, seed=1_000_000 + seed)
        keys = [
            s.trace_id.hex() + s.span_id.hex()
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        found = [stored.get(k, 0) for k in keys]
        if status == "200":
            ok = all(n == 1 for n in found)
            counts["acked"] += 1
        else:
            ok = all(n == 0 for n in found) or all(n == 1 for n in found)
            counts["not acked, stored" if found and found[0] else "not acked, absent"] += 1
        if not ok:
            problems += 1
            print(f"request {seed} ({status}): stored counts {sorted(set(found))}")
    print(f"requests: {dict(counts)}; statuses {dict(collections.Counter(load.outcome.values()))}")
    return problems


def lease_holder(pg) -> str | None:
    import psycopg

    with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/faults", autocommit=True) as con:
        row = con.execute("SELECT holder FROM roomscope_leases WHERE expires > now()").fetchone()
    return row[0] if row else None


def maintenance_fault(pg, catalog: str, data: str, replicas: list[Server]) -> None:
    """SIGKILL the lease holder, wait for the other replica to hold it, reading throughout."""
    reads = collections.Counter()
    stop = threading.Event()

    def reader() -> None:
        con = open_lake_reader(LakeConfig(catalog, data), "512MB")
        while not stop.is_set():
            try:
                con.execute("SELECT count(*) FROM spans").fetchone()
                reads["ok"] += 1
            except Exception as exc:
                reads[type(exc).__name__] += 1
            time.sleep(0.2)
        con.close()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while (holder := lease_holder(pg)) is None:
        assert time.monotonic() < deadline, "no replica took the lease"
        time.sleep(0.2)
    pids = {r.proc.pid: i for i, r in enumerate(replicas)}
    victim = pids[int(holder.split(":")[1])]
    lines = replicas[victim].lines
    while True:  # a merge under way: its start logged, its end not yet
        assert time.monotonic() < deadline + 120, "no merge seen on the lease holder"
        last = [ln for ln in lines if "merging adjacent files" in ln or "merged " in ln]
        if last and "merging adjacent files" in last[-1]:
            break
        time.sleep(0.005)
    os.kill(replicas[victim].proc.pid, signal.SIGKILL)
    replicas[victim].proc.wait(30)
    killed = time.monotonic()
    time.sleep(1)  # the dead replica's last stderr lines reach `lines`
    tail = [ln for ln in lines if "merging adjacent files" in ln or "merged " in ln][-1]
    assert "merging adjacent files" in tail, "the merge finished before the kill"
    print(f"maintenance holder (replica {victim}) SIGKILLed during a merge: {tail.strip()}")
    while (now := lease_holder(pg)) in (None, holder):
        assert time.monotonic() < killed + 90, "the lease was not taken over"
        time.sleep(0.5)
    print(f"lease taken over by {now} {time.monotonic() - killed:.1f} s after the kill")
    heir = replicas[1 - victim].lines
    seen = len(heir)
    while not any("merged " in ln for ln in heir[seen:]):  # the heir merges
        assert time.monotonic() < killed + 180, "the new holder did not merge"
        time.sleep(0.5)
    print(f"the new holder merged: {[ln for ln in heir if 'merged ' in ln][-1].strip()}")
    stop.set()
    t.join(30)
    print(f"reads during the fault: {dict(reads)}")
    assert set(reads) == {"ok"}, reads
    replicas[victim] = replicas[1 - victim]  # stopped below (once is enough)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fault", choices=["kill", "pg", "maint"])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--every", type=float, default=4.0)
    ap.add_argument("--down", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--spans", type=int, default=64)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="roomscope-lake-faults-"))
    with running_postgres() as pg:
        catalog = pg.create_database("faults")
        data = workdir / "lake"
        data.mkdir()
        env = {
            "ROOMSCOPE_STORE_BACKEND": "ducklake",
            "ROOMSCOPE_STORE_CATALOG": catalog,
            "ROOMSCOPE_STORE_DATA_PATH": str(data),
            "ROOMSCOPE_COMPACTION_INTERVAL": "2",
        }

        def replica(name: str) -> Server:
            (workdir / name).mkdir(exist_ok=True)
            return Server(workdir / name, env)

        replicas = [replica("r0"), replica("r1")]
        targets = [f"http://127.0.0.1:{r.ports['http']}" for r in replicas]
        load = Load(targets, args.connections, args.spans)
        load.start()
        time.sleep(args.every)
        if args.fault == "kill":
            for k in range(args.kills):
                os.kill(replicas[0].proc.pid, signal.SIGKILL)
                replicas[0].proc.wait(30)
                print(f"kill {k + 1}: replica 0 SIGKILLed after {len(load.outcome)} requests")
                replicas[0] = replica("r0")
                load.targets[0] = f"http://127.0.0.1:{replicas[0].ports['http']}"
                time.sleep(args.every)
        elif args.fault == "maint":
            maintenance_fault(pg, catalog, str(data), replicas)
        else:
            pg.stop()
            down = time.monotonic()
            print("PostgreSQL stopped")
            time.sleep(args.down)
            pg.start()
            print(f"PostgreSQL started after {time.monotonic() - down:.1f} s")
            before = sum(1 for s in load.outcome.values() if s == "200")
            deadline = time.monotonic() + 60
            while sum(1 for s in load.outcome.values() if s == "200") <= before + 10:
                assert time.monotonic() < deadline, "ingest did not recover"
                time.sleep(0.1)
            print(f"ingest recovered {time.monotonic() - down - args.down:.1f} s after the start")
            time.sleep(args.every)
        load.finish()
        for r in {id(r): r for r in replicas}.values():
            r.stop()
        problems = verify(load, catalog, str(data))
    print(
        "OK: no acknowledged record lost or duplicated, nothing half-visible"
        if not problems
        else f"FAILED: {problems} requests"
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
