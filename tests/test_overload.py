"""Overload: a tiny write queue and a slowed writer. Raw senders are refused with HTTP 503 +
Retry-After and gRPC UNAVAILABLE; the real OTel SDK exporters retry on those and get every span in;
the collector's RSS stays bounded throughout; after the burst it serves normally."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import duckdb
import grpc
import httpx
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from reliability import build_request, grpc_send, http_send, new_rids, start_serve, wait_until

QUEUE = 400  # limits.max_queue_records
DELAY = 0.15  # seconds every commit takes longer (tests/slow_store.py)
RSS_GROWTH_LIMIT = 160 * 1024 * 1024  # over the RSS measured once ready
RSS_LIMIT = 500 * 1024 * 1024  # absolute


class RssSampler:
    def __init__(self, server):
        self.server = server
        self.samples: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.samples.append(self.server.rss_bytes())
            except (OSError, AssertionError):
                return

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(5)
        return max(self.samples)


def raw_burst(server, n_threads: int = 6, requests_each: int = 12, records: int = 1000) -> Counter:
    """Concurrent raw HTTP and gRPC senders of big requests; returns what they were answered."""
    answers: Counter = Counter()
    lock = threading.Lock()

    def run(i: int) -> None:
        rnd = random.Random(i)
        kind = "grpc" if i % 2 else "http"
        with (
            httpx.Client(timeout=30) as client,
            grpc.insecure_channel(server.grpc_endpoint) as channel,
        ):
            for _ in range(requests_each):
                signal = rnd.choice(["traces", "logs", "metrics"])
                request = build_request(signal, new_rids(f"burst{i}", records), rnd)
                if kind == "grpc":
                    try:
                        grpc_send(channel, signal, request, timeout=30)
                        answer = "grpc OK"
                    except grpc.RpcError as exc:
                        answer = f"grpc {exc.code().name}"
                else:
                    r = http_send(client, server.http_url, signal, request)
                    answer = f"http {r.status_code}"
                    if r.status_code == 503:
                        assert r.headers.get("retry-after", "").isdigit(), r.headers
                with lock:
                    answers[answer] += 1

    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(run, range(n_threads)))
    return answers


def span_batches(n_batches: int, size: int) -> list[list]:
    """Real SDK spans (ReadableSpan) in batches, each span with a unique rid attribute."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "overload"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("overload")
    for b in range(n_batches):
        for i in range(size):
            with tracer.start_as_current_span("work", attributes={"rid": f"sdk-{b}-{i}"}):
                pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return [spans[b * size : (b + 1) * size] for b in range(n_batches)]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_overload_is_refused_retryably_sdk_retries_get_everything_in_and_rss_is_bounded(
    tmp_path,
):
    db = tmp_path / "overload.duckdb"
    settings = {"limits.max_queue_records": QUEUE}
    server = start_serve(db, settings, commit_delay=DELAY)
    try:
        rss_ready = server.rss_bytes()
        sampler = RssSampler(server)

        # 1. Raw senders: both refusals happen, with Retry-After on HTTP.
        answers = raw_burst(server)
        print(f"\nraw burst answers: {dict(answers)}")
        assert answers["http 503"] > 0 and answers["grpc UNAVAILABLE"] > 0, answers
        assert set(answers) <= {"http 200", "http 503", "grpc OK", "grpc UNAVAILABLE"}, answers
        assert answers["http 200"] + answers["grpc OK"] > 0, answers

        # 2. Real SDK exporters, concurrently: they retry on 503/UNAVAILABLE until all is in.
        batches = span_batches(12, 200)
        http_503s = Counter()

        def count(response, *args, **kwargs):
            http_503s[response.status_code] += 1

        def export(i: int) -> SpanExportResult:
            if i % 2:
                exporter = GrpcExporter(endpoint=server.grpc_endpoint, insecure=True, timeout=60)
            else:
                session = requests.Session()
                session.hooks["response"].append(count)
                exporter = HttpExporter(
                    endpoint=f"{server.http_url}/v1/traces", timeout=60, session=session
                )
            try:
                return exporter.export(batches[i])
            finally:
                exporter.shutdown()

        started = time.monotonic()
        with ThreadPoolExecutor(len(batches)) as pool:
            results = list(pool.map(export, range(len(batches))))
        print(
            f"SDK exports {results.count(SpanExportResult.SUCCESS)}/{len(results)} succeeded"
            f" in {time.monotonic() - started:.1f}s; HTTP answers seen {dict(http_503s)}"
        )
        assert results == [SpanExportResult.SUCCESS] * len(batches)
        assert http_503s[503] > 0, "the SDK exporters were never refused: no overload happened"

        # 3. After the burst: ready and serving normally.
        with httpx.Client(timeout=10) as client:
            wait_until(
                lambda: client.get(f"{server.api_url}/readyz").status_code == 200, 10, "ready"
            )
            rids = new_rids("after", 10)
            r = http_send(
                client, server.http_url, "logs", build_request("logs", rids, random.Random())
            )
            assert r.status_code == 200
            with grpc.insecure_channel(server.grpc_endpoint) as channel:
                grpc_send(
                    channel,
                    "metrics",
                    build_request("metrics", new_rids("after", 10), random.Random()),
                )

        peak = sampler.finish()
        print(
            f"RSS ready {rss_ready / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB"
            f" (limits: +{RSS_GROWTH_LIMIT / 2**20:.0f} MiB, {RSS_LIMIT / 2**20:.0f} MiB)"
        )
        assert peak - rss_ready < RSS_GROWTH_LIMIT
        assert peak < RSS_LIMIT

        server.terminate()
        assert server.proc.wait(30) == 0, server.output()
    finally:
        server.kill()

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT count(*), count(DISTINCT attributes['rid']) FROM spans"
            " WHERE attributes['rid'] LIKE 'sdk-%'"
        ).fetchone()
    finally:
        con.close()
    assert rows == (12 * 200, 12 * 200), rows
