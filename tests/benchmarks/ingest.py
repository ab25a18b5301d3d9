"""Ingest benchmark (not run by pytest or CI): acked spans/s over OTLP/HTTP protobuf or OTLP/gRPC.

Starts `roomscope serve` in a separate process (free ports, store in a temp dir) unless --target
names a running collector, pre-builds 512-span requests (~10 attributes per span), sends them from
N concurrent connections for a fixed time, counts the spans of 200/OK answers, then checks that
the store holds exactly that many spans (every ack committed) and prints acked spans/s.

    python tests/benchmarks/ingest.py                       # HTTP, 8 connections, 10 s
    python tests/benchmarks/ingest.py --protocol grpc --seconds 20
    python tests/benchmarks/ingest.py --profile /tmp/ingest.txt   # py-spy the server too
    python tests/benchmarks/ingest.py --target http://host:4318 --api http://host:4320
    python tests/benchmarks/ingest.py --forward-slow 0.5     # forwarding on, to a slow upstream

The client is threads over http.client / a raw gRPC method with pre-serialized bodies, so it costs
little CPU next to the server (both share this machine's cores).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from otlp_factory import trace_request  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Server:
    """`roomscope serve` in its own process, on free ports, with its store in a temp dir."""

    def __init__(self, workdir: Path, extra_env: dict[str, str]):
        self.db = workdir / "bench.duckdb"
        env = {**os.environ, **extra_env}
        env.pop("ROOMSCOPE_CONFIG", None)
        cmd = [sys.executable, "-c", "from query.cli import main; main()", "serve"]
        cmd += ["--db", str(self.db), "--host", "127.0.0.1"]
        cmd += ["--grpc-port", "0", "--http-port", "0", "--api-port", "0"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                if line.startswith("roomscope ready:"):
                    parts = line.split()
                    self.ports = {
                        "grpc": int(parts[parts.index("OTLP/gRPC") + 1].lstrip(":")),
                        "http": int(parts[parts.index("OTLP/HTTP") + 1].lstrip(":")),
                    }
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60) or not self.ports:
            self.proc.kill()
            raise SystemExit("roomscope serve did not start:\n" + "".join(self.lines[-30:]))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def count(self, table: str = "spans") -> int:
        import duckdb

        con = duckdb.connect(str(self.db), read_only=True)
        try:
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            con.close()


class SlowUpstream:
    """An OTLP/HTTP endpoint answering each request 200 after ``delay`` seconds (--forward-slow):
    the server under test forwards every committed batch to it."""

    def __init__(self, delay: float):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        upstream = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                upstream.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {"ROOMSCOPE_FORWARD_ENDPOINTS": json.dumps({"slow": {"url": self.url}})}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def forward_report(db: Path) -> str:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        sent, dropped, dropped_records = con.execute(
            "SELECT sent_batches, dropped_batches, dropped_records FROM forward_endpoints"
        ).fetchone()
        queued, queued_bytes = con.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM forward_outbox"
        ).fetchone()
    finally:
        con.close()
    return (
        f"forwarding: {sent} batches sent to the slow upstream, {queued} queued"
        f" ({queued_bytes / 2**20:.0f} MiB), {dropped} dropped ({dropped_records} spans)"
    )


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked_spans = 0
        self.ledger = 0  # acked spans of the soak's ledger requests
        self.statuses: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []

    def add(self, status: str, spans: int, latency: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.acked_spans += spans
            self.latencies.append(latency)


class HttpPoster:
    """One keep-alive OTLP/HTTP connection: post a trace body, get the status (or the name of
    the error, after which the connection is made anew)."""

    def __init__(self, url: str):
        self.headers = {"Content-Type": "application/x-protobuf"}
        self.u = urllib.parse.urlsplit(url)
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.u.hostname, self.u.port or 80, timeout=60)

    def post(self, body: bytes) -> str:
        try:
            self.conn.request("POST", "/v1/traces", body, self.headers)
            resp = self.conn.getresponse()
            resp.read()
            return str(resp.status)
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = self._connect()
            return type(exc).__name__

    def close(self) -> None:
        self.conn.close()


def http_sender(url: str, bodies: list[bytes], spans: int, stop: threading.Event, stats: Stats):
    poster = HttpPoster(url)
    i = 0
    while not stop.is_set():
        body = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        status = poster.post(body)
        stats.add(status, spans if status == "200" else 0, time.perf_counter() - t0)
        if status == "503":
            time.sleep(0.05)
    poster.close()


def grpc_sender(target: str, bodies: list[bytes], spans: int, stop: threading.Event, stats: Stats):
    import grpc

    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        export = channel.unary_unary(EXPORT)  # bytes in, bytes out: no client-side protobuf
        i = 0
        while not stop.is_set():
            body = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter()
            try:
                export(body, timeout=60)
                status = "OK"
            except grpc.RpcError as exc:
                status = exc.code().name
            stats.add(status, spans if status == "OK" else 0, time.perf_counter() - t0)
            if status in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
                time.sleep(0.05)


# The benchmark's own spans (trace_request's room and project): a running collector may hold
# other data, and its retention job may be deleting old spans while the benchmark runs.
OWN_SPANS = "SELECT count(*) FROM span_rows WHERE project = 'acme' AND room = 'lobby'"


def api_count(api: str) -> int:
    req = urllib.request.Request(
        f"{api}/api/v1/sql",
        data=json.dumps({"sql": OWN_SPANS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)["rows"][0][0]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(pid: int, seconds: float, out: str) -> subprocess.Popen:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    cmd = [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50", "--threads"]
    cmd += ["--nonblocking", "-f", "raw", "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: str, top: int = 25) -> None:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        own[frames[-1]] += count
        for f in set(frames[1:]):
            incl[f] += count
    print(f"\nprofile: {total} samples (all threads, idle included) -> {path}")
    print("by thread:")
    for name, n in threads.most_common(8):
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("self time:")
    for name, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("inclusive:")
    for name, n in incl.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", choices=["http", "grpc"], default="http")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--spans-per-request", type=int, default=512)
    ap.add_argument("--distinct-requests", type=int, default=16)
    ap.add_argument("--target", help="a running collector: http://host:4318 or host:4317 (grpc)")
    ap.add_argument("--api", help="its query API (http://host:4320), to verify the count")
    ap.add_argument("--profile", help="py-spy the started server; collapsed stacks to this file")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    ap.add_argument(
        "--forward-slow",
        type=float,
        metavar="SECONDS",
        help="forward to a local upstream that takes SECONDS per request (forward.endpoints)",
    )
    args = ap.parse_args()

    spans = args.spans_per_request
    bodies = [
        trace_request(spans, seed=i).SerializeToString() for i in range(args.distinct_requests)
    ]
    print(
        f"{args.protocol}: {args.connections} connections, {spans} spans/request "
        f"({len(bodies[0]) / spans:.0f} B/span), {args.seconds:.0f} s",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="roomscope-bench-"))
    server = None
    upstream = SlowUpstream(args.forward_slow) if args.forward_slow is not None else None
    try:
        if args.target:
            target = args.target
            before = api_count(args.api) if args.api else None
        else:
            extra = dict(kv.split("=", 1) for kv in args.env)
            if upstream is not None:
                extra.update(upstream.env())
            server = Server(workdir, extra)
            ports = server.ports
            if args.protocol == "http":
                target = f"http://127.0.0.1:{ports['http']}"
            else:
                target = f"127.0.0.1:{ports['grpc']}"
            before = 0
        stats = Stats()
        stop = threading.Event()
        sender = http_sender if args.protocol == "http" else grpc_sender
        threads = [
            threading.Thread(target=sender, args=(target, bodies, spans, stop, stats), daemon=True)
            for _ in range(args.connections)
        ]
        prof = (
            profile(server.proc.pid, args.seconds, args.profile)
            if args.profile and server
            else None
        )
        server_cpu0 = cpu_seconds(server.proc.pid) if server else None
        client_cpu0 = time.process_time()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(args.seconds)  # the measured interval itself
        stop.set()
        for t in threads:
            t.join(120)
        elapsed = time.perf_counter() - t0
        server_cpu = cpu_seconds(server.proc.pid) if server else None
        client_cpu = time.process_time() - client_cpu0
        if prof is not None:
            prof.wait(60)

        lat = sorted(stats.latencies) or [0.0]
        rate = stats.acked_spans / elapsed
        print(f"responses: {dict(stats.statuses)}")
        print(
            f"latency p50 {1000 * lat[len(lat) // 2]:.0f} ms, "
            f"p99 {1000 * lat[int(len(lat) * 0.99)]:.0f} ms"
        )
        print(f"acked {stats.acked_spans} spans in {elapsed:.1f} s = {rate:,.0f} spans/s")
        if server_cpu is not None and server_cpu0 is not None and stats.acked_spans:
            used = server_cpu - server_cpu0
            print(
                f"server CPU {used / elapsed:.2f} cores"
                f" ({1e6 * used / stats.acked_spans:.1f} us/span),"
                f" client {client_cpu / elapsed:.2f}"
            )

        if server is not None:
            code = server.stop()
            stored = server.count()
            print(f"server exited {code}; store holds {stored} spans")
            if upstream is not None:
                print(forward_report(server.db))
        elif before is not None:
            stored = api_count(args.api) - before
            print(f"store gained {stored} spans")
        else:
            stored = None
            print("not verified (give --api to count the store of a running collector)")
        if stored is not None and stored != stats.acked_spans:
            print(f"MISMATCH: acked {stats.acked_spans}, stored {stored}")
            sys.exit(1)
        if stored is not None:
            print("every ack committed: OK")
        if prof is not None:
            summarize_profile(args.profile)
    finally:
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
        if upstream is not None:
            upstream.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
