"""When the store cannot be written, requests get 503 / UNAVAILABLE (retryable), nothing is acked
that was not committed, /readyz says not ready, and ingest comes back by itself once the disk is
usable.

Two ways to break the disk: a writer fault injection (always runs) and a real, tiny tmpfs filled to
the last byte, including a failed checkpoint that makes DuckDB invalidate the database (runs where
the sandbox lets us mount; skipped otherwise).
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import threading
from pathlib import Path

import duckdb
import grpc
import httpx
import pytest
from reliability import build_request, grpc_send, http_send, new_rids, stored_rids, wait_until


class Sender:
    """Posts fresh records (never resending) and remembers which requests were acked."""

    def __init__(self, rc, prefix: str):
        self.rc = rc
        self.prefix = prefix
        self.rnd = random.Random(prefix)
        self.client = httpx.Client(timeout=10)
        self.acked: set[str] = set()
        self.statuses: list[int] = []

    def post(self, n: int = 20) -> httpx.Response:
        rids = new_rids(self.prefix, n)
        r = http_send(
            self.client, self.rc.http_url, "traces", build_request("traces", rids, self.rnd)
        )
        self.statuses.append(r.status_code)
        if r.status_code == 200:
            self.acked.update(rids)
        return r

    def close(self) -> None:
        self.client.close()


def readyz(rc) -> int:
    return httpx.get(f"{rc.api_url}/readyz", timeout=5).status_code


def assert_refused_retryably(sender: Sender, rc, before_each=lambda: None) -> None:
    before_each()
    r = sender.post(200)
    assert r.status_code == 503, r.text
    assert r.headers.get("retry-after"), r.headers
    before_each()
    with grpc.insecure_channel(rc.grpc_endpoint) as channel:
        rids = new_rids("grpc", 200)
        with pytest.raises(grpc.RpcError) as err:
            grpc_send(channel, "logs", build_request("logs", rids, random.Random(0)))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value


def assert_acked_equals_stored(rc, sender: Sender) -> None:
    cur = rc.collector.store.cursor()
    try:
        stored = stored_rids(cur, "traces")
        logs = cur.execute("SELECT count(*) FROM logs").fetchone()[0]
    finally:
        cur.close()
    assert len(stored) == len(set(stored)), "a record was stored twice"
    assert set(stored) == sender.acked, "stored records differ from acknowledged ones"
    assert logs == 0, "a refused gRPC request was stored"


def test_write_faults_answer_503_and_ingest_resumes_by_itself(start_collector, monkeypatch):
    rc = start_collector()
    store = rc.collector.store
    real_write = store._write
    failing = threading.Event()
    calls = {"failed": 0}

    def write(tables, also=None):
        if failing.is_set():
            calls["failed"] += 1
            raise duckdb.IOException('Could not write file "roomscope.duckdb.wal": disk full')
        return real_write(tables, also)

    monkeypatch.setattr(store, "_write", write)
    sender = Sender(rc, "faults")
    try:
        assert sender.post().status_code == 200
        assert readyz(rc) == 200

        failing.set()
        for _ in range(3):
            assert_refused_retryably(sender, rc)
        assert readyz(rc) == 503
        assert rc.query("SELECT count(*) FROM spans")[0][0] == 20  # readers keep working
        # While the store fails the writer probes it by itself (no traffic needed) ...
        wait_until(lambda: calls["failed"] >= 10, 20, "write probes while failing")
        assert readyz(rc) == 503

        failing.clear()  # ... and becomes ready again once a write goes through.
        wait_until(lambda: readyz(rc) == 200, 10, "/readyz to recover")
        for _ in range(3):
            assert sender.post().status_code == 200
        assert sender.statuses.count(503) == 3
        assert_acked_equals_stored(rc, sender)
    finally:
        sender.close()


def test_invalidated_store_is_reopened_under_steady_traffic(start_collector, monkeypatch):
    """DuckDB invalidates the database after a fatal I/O error and reopening fails while the disk
    is still bad; with requests arriving all the time the writer must still get back on its own."""
    rc = start_collector()
    store = rc.collector.store
    real_write, real_open = store._write, store.open
    failing = threading.Event()

    def write(tables, also=None):
        if failing.is_set() and store._con is not None:
            raise duckdb.FatalException("FATAL Error: Failed: database has been invalidated")
        return real_write(tables, also)

    def open_():
        if failing.is_set():
            raise duckdb.IOException('Cannot open file "roomscope.duckdb": I/O error')
        return real_open()

    monkeypatch.setattr(store, "_write", write)
    monkeypatch.setattr(store, "open", open_)
    sender = Sender(rc, "steady")
    stop = threading.Event()

    def steady() -> None:
        while not stop.is_set():
            sender.post(5)

    thread = threading.Thread(target=steady, daemon=True)
    try:
        assert sender.post().status_code == 200
        thread.start()
        failing.set()
        wait_until(lambda: sender.statuses[-3:] == [503] * 3, 10, "503s while failing")
        wait_until(lambda: store._con is None, 10, "the store to be closed for a reopen")
        assert readyz(rc) == 503
        failing.clear()
        wait_until(lambda: readyz(rc) == 200, 10, "/readyz to recover under traffic")
        wait_until(lambda: sender.statuses[-3:] == [200] * 3, 10, "200s again")
    finally:
        stop.set()
        thread.join(10)
        sender.close()
    assert 503 in sender.statuses
    assert set(sender.statuses) == {200, 503}
    assert_acked_equals_stored(rc, sender)


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 16 MiB tmpfs, or a skip where the sandbox does not allow mounting."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def fill(disk: Path) -> None:
    """Take every free byte of the file system (again: a failed commit may give some back)."""
    filler = disk / f"filler-{len(list(disk.glob('filler-*')))}"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


@pytest.mark.slow
def test_full_disk_answers_503_and_ingest_resumes_when_space_returns(start_collector, tiny_disk):
    rc = start_collector(db=tiny_disk / "roomscope.duckdb")
    sender = Sender(rc, "disk")
    try:
        for _ in range(3):
            assert sender.post(50).status_code == 200

        refill = lambda: fill(tiny_disk)  # noqa: E731
        assert_refused_retryably(sender, rc, refill)  # the WAL cannot grow: commits fail
        assert readyz(rc) == 503

        # A checkpoint on a full disk makes DuckDB invalidate the whole database (as an automatic
        # checkpoint during a commit would); the writer must reopen it to recover.
        cur = rc.collector.store.cursor()
        with pytest.raises(duckdb.Error):
            cur.execute("CHECKPOINT")
        with contextlib.suppress(duckdb.Error):
            cur.close()
        for _ in range(2):
            assert_refused_retryably(sender, rc, refill)
        assert readyz(rc) == 503
        # Readers get an answer or a clean error, never a hang or a crash.
        with contextlib.suppress(duckdb.Error, Exception):
            rc.query("SELECT count(*) FROM spans")

        for filler in tiny_disk.glob("filler-*"):
            filler.unlink()  # space returns
        wait_until(lambda: readyz(rc) == 200, 15, "/readyz to recover after space returned")
        for _ in range(3):
            assert sender.post(50).status_code == 200
        assert_acked_equals_stored(rc, sender)
    finally:
        sender.close()
        rc.stop()
    assert rc.collector.store._con is None  # closed cleanly before the tmpfs goes away
