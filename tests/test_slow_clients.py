"""Slow clients (slow-loris) are timed out and never block other exporters."""

from __future__ import annotations

import socket
import time

import httpx

from otlp_factory import trace_request


def _recv_until_closed(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            return data
        data += chunk
    raise AssertionError("connection was not closed by the server in time")


def test_trickled_headers_are_cut_off_and_others_are_served(start_collector):
    rc = start_collector(**{"limits.header_timeout": 1.0, "limits.request_timeout": 1.0})
    port = rc.collector.ports["http"]
    loris = socket.create_connection(("127.0.0.1", port))
    loris.settimeout(0.2)
    loris.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    started = time.monotonic()

    body = trace_request(4).SerializeToString()
    for _ in range(3):  # served while the slow client hangs on
        r = httpx.post(
            f"{rc.http_url}/v1/traces",
            content=body,
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.status_code == 200
    _recv_until_closed(loris, started + 5)
    assert time.monotonic() - started < 5
    loris.close()
    assert rc.query("SELECT count(*) FROM spans")[0][0] == 12


def test_body_never_finished_gets_408(start_collector):
    rc = start_collector(**{"limits.request_timeout": 1.0})
    sock = socket.create_connection(("127.0.0.1", rc.collector.ports["http"]))
    sock.settimeout(0.2)
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 1000\r\n\r\n" + b"\x0a" * 10
    )
    started = time.monotonic()
    reply = _recv_until_closed(sock, started + 5)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert b"not received within" in reply
    sock.close()
