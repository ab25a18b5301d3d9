"""A collector killed with SIGKILL mid-session and restarted on the same file keeps the session."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import read_store
from otlp_factory import trace_request

S = 1_000_000_000
ZERO_PORTS = ("--grpc-port", "0", "--http-port", "0", "--api-port", "0")
READY = re.compile(r"roomscope ready: OTLP/gRPC :(\d+)\s+OTLP/HTTP :(\d+)")


class Served:
    """``roomscope serve`` as a child process; ``http_port`` once it printed its ready line."""

    def __init__(self, db: Path):
        exe = shutil.which("roomscope")
        cmd = [exe] if exe else [sys.executable, "-c", "from query.cli import main; main()"]
        env = {**os.environ, "ROOMSCOPE_SESSIONS_IDLE_TIMEOUT": "300"}
        self.proc = subprocess.Popen(
            [*cmd, "serve", "--db", str(db), "--host", "127.0.0.1", *ZERO_PORTS],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.http_port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30) or not self.http_port:
            self.kill()
            raise AssertionError("collector did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = READY.search(line)
            if m:
                self.http_port = int(m.group(2))
                self._ready.set()
        self._ready.set()  # exited before it was ready

    def send(self, request) -> None:
        r = httpx.post(
            f"http://127.0.0.1:{self.http_port}/v1/traces",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
            timeout=30,
        )
        assert r.status_code == 200, r.text  # 200 = committed

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        self.proc.wait(30)
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self._reap()
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.mark.slow
def test_sigkill_mid_session_then_restart_keeps_one_session(tmp_path):
    db = tmp_path / "killed.duckdb"
    t0 = time.time_ns() - 60 * S
    first = Served(db)
    try:
        first.send(trace_request(32, room="lobby", start_ns=t0, seed=1))
        first.send(trace_request(16, room="lobby", start_ns=t0 + 5 * S, seed=2))
    finally:
        first.kill()
    second = Served(db)
    try:
        second.send(trace_request(24, room="lobby", start_ns=t0 + 30 * S, seed=3))
    finally:
        second.stop()
    assert second.proc.returncode == 0, "".join(second.lines)
    rows = read_store(
        db,
        "SELECT session_id, source, span_count, error_count, ended_at FROM sessions",
    )
    assert len(rows) == 1
    session_id, source, span_count, error_count, ended_at = rows[0]
    assert (source, span_count, ended_at) == ("inferred", 72, None)
    data = read_store(
        db,
        "SELECT session_id, count(*), count_if(status_code = 'ERROR') FROM spans GROUP BY 1",
    )
    assert data == [(session_id, 72, error_count)]
    started = read_store(db, "SELECT count(*) FROM session_events WHERE type = 'session.started'")
    assert started == [(1,)]
