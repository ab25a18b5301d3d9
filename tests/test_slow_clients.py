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


def test_many_slow_clients_at_once_do_not_starve_exporters(start_collector):
    """A hundred slow-loris connections (half trickling headers, half never finishing a body)
    hold no one up, and every one of them is closed by the server within the timeouts."""
    rc = start_collector(**{"limits.header_timeout": 1.5, "limits.request_timeout": 1.5})
    port = rc.collector.ports["http"]
    slow = []
    for i in range(100):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(0.2)
        if i % 2:
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        else:
            sock.sendall(
                b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{"
            )
        slow.append(sock)
    started = time.monotonic()

    body = trace_request(8).SerializeToString()
    with httpx.Client(timeout=5) as client:
        for _ in range(5):
            t = time.monotonic()
            r = client.post(
                f"{rc.http_url}/v1/traces",
                content=body,
                headers={"content-type": "application/x-protobuf"},
            )
            assert r.status_code == 200
            assert time.monotonic() - t < 2.0, "an exporter waited behind slow clients"
    for sock in slow:
        _recv_until_closed(sock, started + 10)
        sock.close()
    assert time.monotonic() - started < 10
    assert rc.query("SELECT count(*) FROM spans")[0][0] == 40
