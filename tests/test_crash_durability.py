"""SIGKILL at random moments under concurrent OTLP/HTTP and gRPC load: every acknowledged span, log
record and metric point is in the store exactly once, and the store opens cleanly after each kill.

Senders never resend a request that got no OK (each request's records carry fresh ``rid``
attributes), so any rid stored twice would be a duplicate made by the collector, and any acked rid
missing would be a lost acknowledgement.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import grpc
import httpx
import pytest
from reliability import (
    SIGNALS,
    ServeProcess,
    build_request,
    grpc_send,
    http_send,
    new_rids,
    start_serve,
    stored_rids,
    wait_until,
)

KILLS = 8


class Load:
    """Concurrent senders against whichever collector process is current."""

    def __init__(self, seed: int):
        self.seed = seed
        self.server: ServeProcess | None = None
        self.generation = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, set[str]] = {s: set() for s in SIGNALS}
        self.sent: dict[str, set[str]] = {s: set() for s in SIGNALS}
        self.failures = 0
        self.threads = [
            threading.Thread(target=self._run, args=(name, kind), daemon=True)
            for name, kind in [("hp", "http"), ("hj", "json"), ("g1", "grpc"), ("g2", "grpc")]
        ]

    def switch(self, server: ServeProcess | None) -> None:
        with self.lock:
            self.server = server
            self.generation += 1

    def acked_total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.acked.values())

    def _run(self, name: str, kind: str) -> None:
        rnd = random.Random(f"{self.seed}-{name}")
        generation = -1
        client: httpx.Client | None = None
        channel: grpc.Channel | None = None
        while not self.stop.is_set():
            with self.lock:
                server = self.server
                if self.generation != generation:
                    generation = self.generation
                    if client is not None:
                        client.close()
                    if channel is not None:
                        channel.close()
                    client = channel = None
            if server is None:
                time.sleep(0.02)  # pacing while no collector runs
                continue
            if kind == "grpc" and channel is None:
                channel = grpc.insecure_channel(server.grpc_endpoint)
            if kind != "grpc" and client is None:
                client = httpx.Client(timeout=10)
            signal = rnd.choice(SIGNALS)
            rids = new_rids(f"{self.seed}{name}", rnd.randint(1, 200))
            request = build_request(signal, rids, rnd)
            with self.lock:
                self.sent[signal].update(rids)
            ok = False
            try:
                if kind == "grpc":
                    assert channel is not None
                    grpc_send(channel, signal, request, timeout=10)
                    ok = True
                else:
                    assert client is not None
                    encoding = "json" if kind == "json" else "protobuf"
                    r = http_send(client, server.http_url, signal, request, encoding)
                    ok = r.status_code == 200
            except (grpc.RpcError, httpx.HTTPError):
                ok = False
            with self.lock:
                if ok:
                    self.acked[signal].update(rids)
                else:
                    self.failures += 1
            if not ok:
                time.sleep(0.02)  # do not spin while the collector is down
        if client is not None:
            client.close()
        if channel is not None:
            channel.close()

    def snapshot(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        with self.lock:
            return (
                {s: set(v) for s, v in self.acked.items()},
                {s: set(v) for s, v in self.sent.items()},
            )


def check_store(db: Path, acked: dict[str, set[str]], sent: dict[str, set[str]]) -> dict:
    """Open the file (read-only, replaying its WAL) and check exactly-once for acked records."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        report = {}
        for signal in SIGNALS:
            counts = Counter(stored_rids(con, signal))
            dupes = [rid for rid, n in counts.items() if n > 1]
            assert not dupes, f"{signal}: {len(dupes)} records stored twice, e.g. {dupes[:3]}"
            missing = acked[signal] - counts.keys()
            assert not missing, (
                f"{signal}: {len(missing)} acked records lost, e.g. {sorted(missing)[:3]}"
            )
            unknown = counts.keys() - sent[signal]
            assert not unknown, f"{signal}: stored records nobody sent: {sorted(unknown)[:3]}"
            report[signal] = (len(acked[signal]), sum(counts.values()))
        return report
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_under_load_loses_no_acked_record_and_duplicates_none(tmp_path):
    seed = random.randrange(1 << 30)
    print(f"\ncrash durability seed {seed}")
    rnd = random.Random(seed)
    db = tmp_path / "crash.duckdb"
    load = Load(seed)
    for t in load.threads:
        t.start()
    server: ServeProcess | None = None
    try:
        for kill in range(1, KILLS + 1):
            server = start_serve(db)  # the ready line proves the file opened and migrated
            before = load.acked_total()
            load.switch(server)
            wait_until(lambda b=before: load.acked_total() > b, 30, "acks from the collector")
            time.sleep(rnd.uniform(0.1, 3.0))  # a random moment under load
            server.kill()
            load.switch(None)
            acked, sent = load.snapshot()
            report = check_store(db, acked, sent)
            print(f"kill {kill}: acked vs stored {report}")

        # A last start on the same file: it opens cleanly and keeps ingesting after the kills.
        server = start_serve(db)
        before = load.acked_total()
        load.switch(server)
        wait_until(lambda: load.acked_total() > before, 30, "acks after the last restart")
        load.stop.set()
        for t in load.threads:
            t.join(30)
        server.terminate()
        assert server.proc.wait(30) == 0, server.output()
    finally:
        load.stop.set()
        if server is not None:
            server.kill()
    acked, sent = load.snapshot()
    report = check_store(db, acked, sent)
    total_acked = sum(a for a, _ in report.values())
    total_stored = sum(s for _, s in report.values())
    print(
        f"final: acked vs stored {report}; total acked {total_acked}, stored {total_stored},"
        f" sent {sum(len(v) for v in sent.values())}, failed requests {load.failures}"
    )
    assert total_acked > 1000
