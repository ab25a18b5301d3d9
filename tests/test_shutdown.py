"""SIGTERM under load: in-flight requests are committed before their OK, requests arriving during
the shutdown are refused, every acked record is in the file, and the process exits within
server.shutdown_timeout (plus a small margin) even when the writer is stuck."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

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

SHUTDOWN_TIMEOUT = 4.0
MARGIN = 3.0  # interpreter teardown


class Senders:
    def __init__(self, server: ServeProcess, n_http: int = 2, n_grpc: int = 2):
        self.server = server
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, set[str]] = {s: set() for s in SIGNALS}
        # (started, finished, ok, detail) for every request
        self.results: list[tuple[float, float, bool, str]] = []
        kinds = ["http"] * n_http + ["grpc"] * n_grpc
        self.threads = [
            threading.Thread(target=self._run, args=(f"{k}{i}", k), daemon=True)
            for i, k in enumerate(kinds)
        ]
        for t in self.threads:
            t.start()

    def _run(self, name: str, kind: str) -> None:
        rnd = random.Random(name)
        with (
            httpx.Client(timeout=30) as client,
            grpc.insecure_channel(self.server.grpc_endpoint) as channel,
        ):
            while not self.stop.is_set():
                signal = rnd.choice(SIGNALS)
                rids = new_rids(f"sd{name}", rnd.randint(1, 100))
                request = build_request(signal, rids, rnd)
                started = time.monotonic()
                try:
                    if kind == "grpc":
                        grpc_send(channel, signal, request, timeout=30)
                        ok, detail = True, "OK"
                    else:
                        r = http_send(client, self.server.http_url, signal, request)
                        ok, detail = r.status_code == 200, str(r.status_code)
                except grpc.RpcError as exc:
                    ok, detail = False, exc.code().name
                except httpx.HTTPError as exc:
                    ok, detail = False, type(exc).__name__
                with self.lock:
                    self.results.append((started, time.monotonic(), ok, detail))
                    if ok:
                        self.acked[signal].update(rids)
                if not ok:
                    time.sleep(0.02)  # pacing after a refusal

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(40)


def shutting_down_seen(server: ServeProcess) -> bool:
    return any("shutting down" in line for line in server.lines) or server.proc.poll() is not None


def check_file(db, acked: dict[str, set[str]]) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        total = 0
        for signal in SIGNALS:
            counts = Counter(stored_rids(con, signal))
            assert all(n == 1 for n in counts.values()), f"{signal}: duplicates"
            missing = acked[signal] - counts.keys()
            assert not missing, f"{signal}: {len(missing)} acked records lost"
            total += len(acked[signal])
        return total
    finally:
        con.close()


@pytest.mark.slow
def test_sigterm_under_load_commits_acked_refuses_new_and_exits_in_time(tmp_path):
    db = tmp_path / "shutdown.duckdb"
    settings = {"server.shutdown_timeout": SHUTDOWN_TIMEOUT}
    server = start_serve(db, settings, commit_delay=0.3)
    senders = Senders(server)
    try:
        wait_until(lambda: sum(len(v) for v in senders.acked.values()) > 200, 30, "load")
        sigterm_at = time.monotonic()
        server.terminate()
        wait_until(lambda: shutting_down_seen(server), 10, "the shutdown to begin")
        shutdown_seen_at = time.monotonic()
        exit_code = server.proc.wait(SHUTDOWN_TIMEOUT + MARGIN + 5)
        exited_after = time.monotonic() - sigterm_at
    finally:
        server.kill()
        senders.join()
    assert exit_code == 0, server.output()
    assert exited_after < SHUTDOWN_TIMEOUT + MARGIN, f"took {exited_after:.1f}s to exit"

    results = list(senders.results)
    # Requests in flight when SIGTERM came were finished and committed, not dropped.
    drained = [r for r in results if r[0] < sigterm_at < r[1] and r[2]]
    assert drained, "no in-flight request was completed during the shutdown"
    # Requests that started once the shutdown had begun were all refused.
    late = [r for r in results if r[0] > shutdown_seen_at]
    assert late, "no request was tried during the shutdown"
    assert not [r for r in late if r[2]], "a request was accepted during the shutdown"
    refusals = Counter(r[3] for r in late)
    assert set(refusals) <= {"503", "UNAVAILABLE", "ConnectError", "RemoteProtocolError"}, refusals
    acked = check_file(db, senders.acked)
    print(
        f"\nshutdown: {acked} acked records all stored; exit after {exited_after:.2f}s;"
        f" {len(drained)} in-flight requests drained; late requests {dict(refusals)}"
    )


@pytest.mark.slow
def test_sigterm_with_a_stuck_writer_still_exits_within_the_timeout(tmp_path):
    db = tmp_path / "stuck.duckdb"
    settings = {"server.shutdown_timeout": 2.0}
    server = start_serve(db, settings, commit_delay=30)
    senders = Senders(server, n_http=1, n_grpc=1)
    try:
        time.sleep(0.5)  # let the first requests reach the writer, whose commit takes 30 s
        started = time.monotonic()
        server.terminate()
        exit_code = server.proc.wait(2.0 + MARGIN + 5)
        took = time.monotonic() - started
    finally:
        server.kill()
        senders.join()
    assert exit_code == 0, server.output()
    assert took < 2.0 + MARGIN, f"took {took:.1f}s to exit"
    assert not any(r[2] for r in senders.results), "acked without a commit"
    check_file(db, senders.acked)
