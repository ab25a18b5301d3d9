"""schemathesis against the REST API's own OpenAPI document: for generated (valid and invalid)
requests to every route, no 500 and every response matches the documented status codes and
schemas. The store holds a little of each signal, so routes have rows to return."""

from __future__ import annotations

import random

import httpx
import pytest
import schemathesis
from conftest import make_settings
from hypothesis import HealthCheck, settings
from reliability import build_request, http_send, new_rids
from schemathesis import checks

from query.http.serving import serving_thread


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    db = tmp_path_factory.mktemp("apifuzz") / "api.duckdb"
    thread = serving_thread(make_settings(db))
    collector = thread.start()
    http_url = f"http://127.0.0.1:{collector.ports['http']}"
    api_url = f"http://127.0.0.1:{collector.ports['api']}"
    rnd = random.Random(5)
    with httpx.Client(timeout=30) as client:
        for signal in ("traces", "logs", "metrics"):
            r = http_send(client, http_url, signal, build_request(signal, new_rids("api", 20), rnd))
            assert r.status_code == 200
    try:
        yield schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    finally:
        thread.stop()


schema = schemathesis.pytest.from_fixture("api_schema")
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_answers_match_the_openapi_document(case):
    # The bar: no 5xx, and statuses, content types and bodies as documented. (Whether
    # every schema-valid value is also accepted — e.g. an empty ``room`` — is left out.)
    case.call_and_validate(checks=CHECKS)
