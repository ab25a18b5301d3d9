"""Helpers for the reliability tests: `roomscope serve` as a subprocess, and raw OTLP senders whose
records carry unique ids (attribute ``rid``) so a test can check exactly what was stored."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SIGNALS = ("traces", "logs", "metrics")
TABLE = {"traces": "spans", "logs": "logs", "metrics": "metric_points"}
_rid_counter = itertools.count()


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build_request(signal: str, rids: list[str], rnd: random.Random) -> Message:
    """An Export*ServiceRequest with one record per rid, each carrying attribute rid=<rid>."""
    now = time.time_ns()
    resource = [_kv("service.name", "reliability"), _kv("room", "r1"), _kv("project", "p")]
    if signal == "traces":
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(resource)
        ss = rs.scope_spans.add()
        for i, rid in enumerate(rids):
            sp = ss.spans.add(
                trace_id=rnd.randbytes(16),
                span_id=rnd.randbytes(8),
                name="op",
                start_time_unix_nano=now + i,
                end_time_unix_nano=now + i + 1000,
            )
            sp.attributes.append(_kv("rid", rid))
        return req
    if signal == "logs":
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.extend(resource)
        sl = rl.scope_logs.add()
        for i, rid in enumerate(rids):
            lr = sl.log_records.add(time_unix_nano=now + i, severity_number=9)
            lr.body.string_value = f"log {rid}"
            lr.attributes.append(_kv("rid", rid))
        return req
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(resource)
    metric = rm.scope_metrics.add().metrics.add(name="reliability.gauge", unit="1")
    for i, rid in enumerate(rids):
        dp = metric.gauge.data_points.add(time_unix_nano=now + i, as_double=float(i))
        dp.attributes.append(_kv("rid", rid))
    return req


def to_otlp_json(message: Message) -> bytes:
    """OTLP JSON: the protobuf JSON mapping with hex (not base64) trace and span ids."""
    doc = json_format.MessageToDict(message)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    node[k] = base64.b64decode(v).hex()
                else:
                    fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(doc)
    return json.dumps(doc).encode()


def new_rids(prefix: str, n: int) -> list[str]:
    seq = next(_rid_counter)
    return [f"{prefix}-{seq}-{i}" for i in range(n)]


# -- roomscope serve as a subprocess ------------------------------------------------------


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    ports: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def rss_bytes(self) -> int:
        """Resident set size of the collector process, from /proc."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def output(self) -> str:
        return "".join(self.lines[-60:])


def _parse_ready(line: str) -> dict[str, int]:
    # roomscope ready: OTLP/gRPC :P  OTLP/HTTP :P  API http://127.0.0.1:P  store F
    parts = line.split()
    grpc_port = int(parts[parts.index("OTLP/gRPC") + 1].lstrip(":"))
    http_port = int(parts[parts.index("OTLP/HTTP") + 1].lstrip(":"))
    api_port = int(parts[parts.index("API") + 1].rsplit(":", 1)[1])
    return {"grpc": grpc_port, "http": http_port, "api": api_port}


def start_serve(
    db: Path,
    settings: dict[str, Any] | None = None,
    timeout: float = 60,
    commit_delay: float | None = None,
) -> ServeProcess:
    """Start `roomscope serve` on free ports; returns once it printed its ready line.
    ``commit_delay``: every commit takes that many seconds longer (tests/slow_store.py)."""
    env = dict(os.environ)
    env.pop("ROOMSCOPE_CONFIG", None)
    for key, value in (settings or {}).items():
        env["ROOMSCOPE_" + key.replace(".", "_").upper()] = str(value)
    cmd = [sys.executable, "-c", "from query.cli import main; main()"]
    if commit_delay is not None:
        cmd = [sys.executable, str(Path(__file__).parent / "slow_store.py"), str(commit_delay)]
    cmd += ["serve", "--db", str(db)]
    cmd += ["--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--api-port", "0"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(Path(__file__).parent.parent),
    )
    sp = ServeProcess(proc)

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sp.lines.append(line)
            if line.startswith("roomscope ready:"):
                sp.ports = _parse_ready(line)
                sp.ready.set()
        proc.stderr.close()
        sp.ready.set()  # process ended: stop waiting

    threading.Thread(target=pump, daemon=True).start()
    if not sp.ready.wait(timeout) or not sp.ports:
        sp.kill()
        raise AssertionError(f"roomscope serve did not become ready:\n{sp.output()}")
    return sp


# -- raw senders ---------------------------------------------------------------------------

_STUBS = {
    "traces": trace_service_pb2_grpc.TraceServiceStub,
    "logs": logs_service_pb2_grpc.LogsServiceStub,
    "metrics": metrics_service_pb2_grpc.MetricsServiceStub,
}


def http_send(
    client: httpx.Client, url: str, signal: str, message: Message, encoding: str = "protobuf"
) -> httpx.Response:
    if encoding == "json":
        body, ctype = to_otlp_json(message), "application/json"
    else:
        body, ctype = message.SerializeToString(), "application/x-protobuf"
    return client.post(f"{url}/v1/{signal}", content=body, headers={"content-type": ctype})


def grpc_send(channel: grpc.Channel, signal: str, message: Message, timeout: float = 10) -> None:
    """Raises grpc.RpcError unless the server answered OK."""
    _STUBS[signal](channel).Export(message, timeout=timeout)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stored_rids(con, signal: str) -> list[str]:
    """Every rid attribute stored for a signal (duplicates kept)."""
    rows = con.execute(f"SELECT attributes['rid'] FROM {TABLE[signal]}").fetchall()
    return [r[0] for r in rows]
