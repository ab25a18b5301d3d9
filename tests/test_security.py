"""Auth (per-project ingest and query tokens), TLS on all three listeners, logs free of secrets."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from click.testing import CliRunner
from otel_sdk import pipeline
from otlp_factory import trace_request
from screenshots import sse_events

from collector.auth import UNAUTHORIZED, Auth, create_token, hash_token, read_tokens
from query.cli import main

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTO = {"content-type": "application/x-protobuf"}


@dataclass
class Secured:
    rc: Any
    tokens: dict[str, str]  # "alpha-ingest", "alpha-query", "beta-ingest", "beta-query"

    def bearer(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[name]}"}

    def projects(self, table: str = "spans") -> dict[str, int]:
        rows = self.rc.query(f"SELECT project, count(*) FROM {table} GROUP BY 1")
        return dict(rows)


def make_tokens(path: Path) -> dict[str, str]:
    return {
        f"{p}-{s}": create_token(path, p, s) for p in ("alpha", "beta") for s in ("ingest", "query")
    }


@pytest.fixture(params=[True, False], ids=["fast", "python"])
def secured(request: Any, start_collector: Any, tmp_path: Path) -> Secured:
    path = tmp_path / "tokens.toml"
    tokens = make_tokens(path)
    rc = start_collector(
        **{
            "auth.enabled": True,
            "auth.tokens_file": str(path),
            "ingest.fast_decode": request.param,
        }
    )
    return Secured(rc, tokens)


def test_tokens_file_holds_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    tokens = make_tokens(path)
    text = path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    for token in tokens.values():
        assert token not in text and hash_token(token) in text
    stored = read_tokens(path)
    assert {(t.project, t.scope) for t in stored.values()} == {
        (p, s) for p in ("alpha", "beta") for s in ("ingest", "query")
    }
    auth = Auth(path)
    assert auth.project(f"Bearer {tokens['beta-query']}", "query") == "beta"
    assert auth.project(f"Bearer {tokens['beta-query']}", "ingest") is None
    assert auth.project(tokens["beta-query"], "query") is None  # not a Bearer header
    # A token created while the collector runs works at once.
    late = create_token(path, "gamma", "ingest")
    assert auth.project(f"bearer {late}", "ingest") == "gamma"


def test_token_create_prints_the_token_once(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    result = CliRunner().invoke(
        main,
        ["token", "create", "--project", "p1", "--scope", "query", "--tokens-file", str(path)],
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("rs_") and token not in path.read_text()
    assert Auth(path).project(f"Bearer {token}", "query") == "p1"


# --- ingest ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", [None, "nonsense", "alpha-query", "beta-query"])
def test_http_ingest_refuses_missing_wrong_and_query_tokens(secured: Secured, who: str | None):
    headers = dict(PROTO)
    if who == "nonsense":
        headers["authorization"] = "Bearer rs_not-a-token"
    elif who:
        headers.update(secured.bearer(who))
    body = trace_request(8, project="alpha").SerializeToString()
    r = httpx.post(secured.rc.http_url + "/v1/traces", content=body, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    from google.rpc import status_pb2

    status = status_pb2.Status.FromString(r.content)
    assert status.message == UNAUTHORIZED and status.code == 16
    assert secured.projects() == {}


@pytest.mark.parametrize("who", [None, "nonsense", "alpha-query"])
def test_grpc_ingest_refuses_missing_wrong_and_query_tokens(secured: Secured, who: str | None):
    metadata = None
    if who == "nonsense":
        metadata = (("authorization", "Bearer rs_nope"),)
    elif who:
        metadata = tuple(secured.bearer(who).items())
    with grpc.insecure_channel(secured.rc.grpc_endpoint) as channel:
        export = channel.unary_unary(TRACES)
        with pytest.raises(grpc.RpcError) as err:
            export(trace_request(8).SerializeToString(), metadata=metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == UNAUTHORIZED
    assert secured.projects() == {}


def test_ingest_token_stamps_its_project_whatever_the_data_claims(secured: Secured) -> None:
    # The data says project "beta" (resource attribute); the token is alpha's: alpha it is.
    body = trace_request(16, project="beta").SerializeToString()
    headers = {**PROTO, **secured.bearer("alpha-ingest")}
    r = httpx.post(secured.rc.http_url + "/v1/traces", content=body, headers=headers)
    assert r.status_code == 200
    with grpc.insecure_channel(secured.rc.grpc_endpoint) as channel:
        export = channel.unary_unary(TRACES)
        meta = tuple(secured.bearer("beta-ingest").items())
        export(trace_request(8, project="alpha", seed=1).SerializeToString(), metadata=meta)
    assert secured.projects() == {"alpha": 16, "beta": 8}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("how", ["headers", "env"])
def test_sdk_exporters_send_tokens_the_standard_way(
    secured: Secured, protocol: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secured.tokens["beta-ingest"]
    headers = None
    if how == "env":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{token}")
    else:
        headers = {"authorization": f"Bearer {token}"}
    rc = secured.rc
    # Record-level attributes try to claim project alpha: the token's project wins.
    p = pipeline(protocol, rc.http_url, rc.grpc_endpoint, {"project": "alpha"}, headers=headers)
    with p.tracer().start_as_current_span("work", attributes={"project": "alpha"}):
        p.logger().warning("hello %s", "there")
    p.meter().create_counter("jobs").add(3, {"project": "alpha"})
    p.shutdown()
    assert secured.projects("spans") == {"beta": 1}
    assert secured.projects("logs") == {"beta": 1}
    assert set(secured.projects("metric_points")) == {"beta"}  # flush + shutdown export twice


# --- query -------------------------------------------------------------------------------------


@pytest.fixture
def two_projects(secured: Secured) -> Secured:
    for seed, project, room in ((1, "alpha", "alpha-room"), (2, "beta", "beta-room")):
        body = trace_request(16, room=room, project="default", seed=seed).SerializeToString()
        headers = {**PROTO, **secured.bearer(f"{project}-ingest")}
        assert httpx.post(secured.rc.http_url + "/v1/traces", content=body, headers=headers)
    assert secured.projects() == {"alpha": 16, "beta": 16}
    return secured


@pytest.mark.parametrize("who", [None, "nonsense", "alpha-ingest"])
def test_api_refuses_missing_wrong_and_ingest_tokens(two_projects: Secured, who: str | None):
    headers = {"authorization": "Bearer nonsense"} if who == "nonsense" else {}
    if who == "alpha-ingest":
        headers = two_projects.bearer(who)
    api = two_projects.rc.api_url
    for r in (
        httpx.get(api + "/api/v1/rooms", headers=headers),
        httpx.get(api + "/api/v1/traces", headers=headers),
        httpx.post(api + "/api/v1/sql", json={"sql": "SELECT 1"}, headers=headers),
    ):
        assert r.status_code == 401 and r.json() == {"error": UNAUTHORIZED}
    assert httpx.get(api + "/healthz").status_code == 200  # probes stay open


def test_query_token_sees_only_its_project(two_projects: Secured) -> None:
    api, s = two_projects.rc.api_url, two_projects
    alpha = s.bearer("alpha-query")
    rooms = httpx.get(api + "/api/v1/rooms", headers=alpha).json()["rooms"]
    assert {r["room"] for r in rooms} == {"alpha-room"}
    spans = httpx.get(api + "/api/v1/traces?limit=1000", headers=alpha).json()["spans"]
    assert len(spans) == 16 and {sp["project"] for sp in spans} == {"alpha"}
    beta_trace = s.rc.query("SELECT trace_id FROM spans WHERE project = 'beta' LIMIT 1")[0][0]
    r = httpx.get(api + f"/api/v1/traces/{beta_trace}", headers=alpha)
    assert r.status_code == 404 or r.json()["spans"] == []
    sql = {"sql": "SELECT project, count(*) AS n FROM spans GROUP BY 1"}
    r = httpx.post(api + "/api/v1/sql", json=sql, headers=s.bearer("beta-query"))
    assert r.json() == {"columns": ["project", "n"], "rows": [["beta", 16]]}


def test_cli_sends_its_token(two_projects: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    api = two_projects.rc.api_url
    runner = CliRunner()
    sql = ["sql", "SELECT DISTINCT room FROM spans", "-o", "json"]
    refused = runner.invoke(main, ["--server", api, *sql])
    assert refused.exit_code == 1 and UNAUTHORIZED in refused.output
    flag = runner.invoke(
        main, ["--server", api, "--token", two_projects.tokens["alpha-query"], *sql]
    )
    assert flag.exit_code == 0 and "alpha-room" in flag.stdout and "beta-room" not in flag.stdout
    monkeypatch.setenv("ROOMSCOPE_TOKEN", two_projects.tokens["beta-query"])
    env = runner.invoke(main, ["--server", api, *sql])
    assert env.exit_code == 0 and "beta-room" in env.stdout and "alpha-room" not in env.stdout


def _send_span(s: Secured, project: str, name: str) -> None:
    """One span of room "lobby" through the OTel SDK exporter, with the project's ingest token."""
    rc = s.rc
    resource = {"service.name": "web", "room": "lobby"}
    p = pipeline(
        "http", rc.http_url, rc.grpc_endpoint, resource, headers=s.bearer(f"{project}-ingest")
    )
    p.tracer().start_span(name).end()
    p.shutdown()


def test_live_stream_of_a_query_token_holds_only_its_project(secured: Secured) -> None:
    rc, api = secured.rc, secured.rc.api_url + "/api/v1/live"
    sse = {"accept": "text/event-stream"}
    timeout = httpx.Timeout(10, read=15)
    with httpx.stream(
        "GET", api, headers={**sse, **secured.bearer("alpha-query")}, timeout=timeout
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_raw())
        assert next(events)[0] == "ready"
        _send_span(secured, "alpha", "alpha.first")
        _send_span(secured, "beta", "beta.secret")
        # beta's span is stored before alpha's last one is sent, and the stream delivers rows in
        # receive order: had it been let through, it would come before alpha.last.
        assert rc.query("SELECT count(*) FROM spans WHERE project = 'beta'") == [(1,)]
        _send_span(secured, "alpha", "alpha.last")
        got = []
        for kind, row in events:
            assert kind == "span" and row["project"] == "alpha", row
            got.append(row["name"])
            if row["name"] == "alpha.last":
                break
    assert got == ["alpha.first", "alpha.last"]
    # The JSON snapshot of the same route is scoped the same way.
    snap = httpx.get(api, params={"room": "lobby"}, headers=secured.bearer("beta-query")).json()
    assert [sp["name"] for sp in snap["spans"]] == ["beta.secret"]
    # The project is the token's, never a parameter.
    r = httpx.get(api, params={"project": "beta"}, headers={**sse, **secured.bearer("alpha-query")})
    assert r.status_code == 400 and "unknown parameter" in r.json()["error"]


@pytest.mark.parametrize("who", [None, "nonsense", "beta-ingest"])
def test_live_stream_refuses_missing_wrong_and_ingest_tokens(secured: Secured, who: str | None):
    headers = {"accept": "text/event-stream"}
    if who == "nonsense":
        headers["authorization"] = "Bearer rs_not-a-token"
    elif who:
        headers.update(secured.bearer(who))
    r = httpx.get(secured.rc.api_url + "/api/v1/live", headers=headers, timeout=10)
    assert r.status_code == 401 and r.json() == {"error": UNAUTHORIZED}


# --- logs --------------------------------------------------------------------------------------


def test_logs_never_hold_tokens_or_bodies(secured: Secured, caplog: pytest.LogCaptureFixture):
    rc, marker = secured.rc, "SECRET-BODY-MARKER"
    caplog.set_level(logging.DEBUG)
    bad = "rs_wrong-token-value"
    good = secured.tokens["alpha-ingest"]
    httpx.post(rc.http_url + "/v1/traces", content=marker.encode(), headers={**PROTO})
    httpx.post(
        rc.http_url + "/v1/traces",
        content=marker.encode(),
        headers={**PROTO, "authorization": f"Bearer {bad}"},
    )
    r = httpx.post(
        rc.http_url + "/v1/traces",
        content=b"\xff\xff" + marker.encode(),
        headers={**PROTO, "authorization": f"Bearer {good}"},
    )
    assert r.status_code == 400
    httpx.post(
        rc.api_url + "/api/v1/sql",
        json={"sql": f"SELECT '{marker}' FROM nowhere"},
        headers={"authorization": f"Bearer {secured.tokens['alpha-query']}"},
    )
    httpx.post(rc.api_url + "/api/v1/sql", json={"sql": marker}, headers={"authorization": bad})
    with grpc.insecure_channel(rc.grpc_endpoint) as channel:
        export = channel.unary_unary(TRACES)
        with pytest.raises(grpc.RpcError):
            export(marker.encode(), metadata=(("authorization", f"Bearer {bad}"),), timeout=10)
        with pytest.raises(grpc.RpcError):
            export(marker.encode(), metadata=(("authorization", f"Bearer {good}"),), timeout=10)
    text = caplog.text
    for secret in (bad, good, marker, *secured.tokens.values()):
        assert secret not in text


# --- TLS ---------------------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_on_all_three_listeners(start_collector: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    rc = start_collector(**{"tls.cert_file": str(cert), "tls.key_file": str(key)})
    ports = rc.collector.ports
    trusted = ssl.create_default_context(cafile=str(cert))
    body = trace_request(4).SerializeToString()
    r = httpx.post(
        f"https://127.0.0.1:{ports['http']}/v1/traces", content=body, headers=PROTO, verify=trusted
    )
    assert r.status_code == 200
    r = httpx.get(f"https://127.0.0.1:{ports['api']}/api/v1/rooms", verify=trusted)
    assert r.status_code == 200 and r.json()["rooms"]
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{ports['grpc']}", creds) as channel:
        channel.unary_unary(TRACES)(trace_request(4, seed=2).SerializeToString(), timeout=10)
    assert rc.query("SELECT count(*) FROM spans") == [(8,)]
    with pytest.raises(httpx.HTTPError):  # no plaintext fallback
        httpx.get(f"http://127.0.0.1:{ports['api']}/healthz", timeout=5)
    with pytest.raises(httpx.HTTPError):  # an untrusted certificate is refused by clients
        httpx.get(f"https://127.0.0.1:{ports['api']}/healthz", timeout=5)


def test_tls_needs_both_files(start_collector: Any, tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    from collector.errors import SettingsError

    with pytest.raises(SettingsError, match=r"tls\.key_file"):
        start_collector(**{"tls.cert_file": str(cert)})


def test_network_defaults() -> None:
    from collector.settings import load_settings

    s = load_settings(env={})
    assert s.get("server.api_host") == "127.0.0.1"
    assert s.get("server.host") == "0.0.0.0"
    assert s.get("auth.enabled") is False
    assert not s.get("tls.cert_file") and not s.get("tls.key_file")


def test_no_cors_by_default(collector: Any) -> None:
    r = httpx.options(
        collector.api_url + "/api/v1/rooms",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(collector.api_url + "/api/v1/rooms", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
