"""collector.otlp_sender follows the OTLP retry rules against real HTTP and gRPC servers on free
ports: only 429/502/503/504 and UNAVAILABLE/RESOURCE_EXHAUSTED are retried, Retry-After is
honoured, else exponential backoff; and roomscope import sends over OTLP/gRPC too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from test_otlp_json import traces as rich_traces

from collector.otlp_sender import GrpcSender, HttpSender, open_sender
from query.cli import main

BODY = rich_traces().SerializeToString()


class Script:
    """Answers to give, in order (the last one repeats), and the requests seen."""

    def __init__(self, answers: list[Any]):
        self.answers = answers
        self.seen = 0

    def next(self) -> Any:
        self.seen += 1
        return self.answers[min(self.seen, len(self.answers)) - 1]


@pytest.fixture
def http_server() -> Iterator[Any]:
    scripts: list[Script] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status, headers, body = scripts[-1].next()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def start(answers: list[Any]) -> tuple[str, Script]:
        scripts.append(Script(answers))
        return f"http://127.0.0.1:{server.server_address[1]}", scripts[-1]

    yield start
    server.shutdown()
    server.server_close()


def test_http_retries_429_502_503_504_honouring_retry_after(http_server: Any) -> None:
    url, script = http_server(
        [
            (503, {"Retry-After": "2"}, b""),
            (429, {}, b""),
            (502, {}, b""),
            (504, {}, b""),
            (200, {"Content-Type": "application/x-protobuf"}, b""),
        ]
    )
    slept: list[float] = []
    sent = HttpSender(url, {}, timeout=10, sleep=slept.append).send("traces", BODY, "protobuf")
    assert sent.ok and sent.attempts == 5 and script.seen == 5
    assert slept == [2.0, 1.0, 2.0, 4.0]  # Retry-After, then backoff 0.5 s doubling


@pytest.mark.parametrize("status", [400, 401, 404, 413, 500])
def test_http_does_not_retry_other_answers(http_server: Any, status: int) -> None:
    body = b'{"error": "no such thing"}'
    url, script = http_server([(status, {"Content-Type": "application/json"}, body)])
    sent = HttpSender(url, {}, timeout=10, sleep=lambda s: None).send("traces", BODY, "protobuf")
    assert not sent.ok and script.seen == 1
    assert sent.status == f"HTTP {status}" and sent.message == "no such thing"


def test_http_gives_up_after_its_attempts(http_server: Any) -> None:
    url, script = http_server([(503, {}, b"")])
    sender = HttpSender(url, {}, timeout=10, attempts=3, sleep=lambda s: None)
    sent = sender.send("traces", BODY, "protobuf")
    assert not sent.ok and sent.status == "HTTP 503" and script.seen == 3


@pytest.fixture
def grpc_server() -> Iterator[Any]:
    scripts: list[Script] = []

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        code = scripts[-1].next()
        if code is not grpc.StatusCode.OK:
            context.abort(code, f"scripted {code.name}")
        return b""

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def start(codes: list[grpc.StatusCode]) -> tuple[str, Script]:
        scripts.append(Script(codes))
        return f"grpc://127.0.0.1:{port}", scripts[-1]

    yield start
    server.stop(None)


def test_grpc_retries_unavailable_and_resource_exhausted_only(grpc_server: Any) -> None:
    S = grpc.StatusCode
    url, script = grpc_server([S.UNAVAILABLE, S.RESOURCE_EXHAUSTED, S.OK])
    slept: list[float] = []
    sender = GrpcSender(url, {}, timeout=10, sleep=slept.append)
    try:
        sent = sender.send("traces", BODY, "protobuf")
        assert sent.ok and sent.attempts == 3 and slept == [0.5, 1.0]
        for code in (S.INVALID_ARGUMENT, S.UNAUTHENTICATED, S.INTERNAL):
            url, script = grpc_server([code])
            sent = sender.send("traces", BODY, "protobuf")
            assert not sent.ok and script.seen == 1 and sent.status == f"gRPC {code.name}"
    finally:
        sender.close()


def test_open_sender_refuses_other_schemes() -> None:
    from collector.otlp_sender import Unreachable

    with pytest.raises(Unreachable, match="http"):
        open_sender("ftp://x:1", {}, timeout=1)


def test_import_over_otlp_grpc_into_a_running_collector(
    start_collector: Any, tmp_path: Path
) -> None:
    from collector.otlp_json import to_otlp_json

    path = tmp_path / "rich.jsonl"
    path.write_bytes(to_otlp_json(rich_traces()) + b"\n")  # JSON in, protobuf over gRPC
    rc = start_collector()
    r = CliRunner().invoke(main, ["import", str(path), "--otlp", f"grpc://{rc.grpc_endpoint}"])
    assert r.exit_code == 0, r.output
    assert rc.query("SELECT name FROM spans ORDER BY name") == [("tool.search",), ("turn",)]
