"""Issue 19, items 11 and 16 (OpenAPI): every error of the query port is ``{"error": ...}``
JSON with the right status (SPEC 6/8) — unknown paths (404), wrong methods (405, with Allow),
anything unexpected (500) — and ``/openapi.json`` documents the errors each route can give."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from edge_data import strict_json

from query.library.reader import Reader


def check_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = strict_json(r.content)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api/v1/nope",
        "/api/v2/sessions",
        "/api/v1/sessions/x/nope",
        "/api/v1/sessions/x/events/more",
        "/static/nope.js",
        "/favicon.ico",
    ],
)
def test_unknown_paths_are_json_404s(collector: Any, path: str) -> None:
    """Was: a plain-text "Not Found"."""
    message = check_error(httpx.get(collector.api_url + path, timeout=10), 404)
    assert message == f"not found: {path}"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/api/v1/sessions", "GET"),
        ("GET", "/api/v1/sql", "POST"),
        ("DELETE", "/api/v1/traces/" + "0" * 32, "GET"),
        ("POST", "/api/v1/sessions/room%2F42/logs", "GET"),
        ("PUT", "/healthz", "GET"),
        ("POST", "/openapi.json", "GET"),
    ],
)
def test_wrong_methods_are_json_405s_naming_the_allowed_ones(
    collector: Any, method: str, path: str, allowed: str
) -> None:
    """Was: a plain-text "Method Not Allowed"."""
    r = httpx.request(method, collector.api_url + path, timeout=10)
    message = check_error(r, 405)
    assert message.startswith(f"method {method} not allowed on ") and allowed in message
    assert allowed in r.headers["allow"]


def test_an_unexpected_failure_is_a_json_500(collector: Any, monkeypatch: Any) -> None:
    """A defect in a read (here: one planted) still answers JSON, not plain text."""

    def broken(self: Reader, page: Any = None) -> Any:
        raise RuntimeError("planted")

    monkeypatch.setattr(Reader, "rooms", broken)
    r = httpx.get(collector.api_url + "/api/v1/rooms", timeout=10)
    assert check_error(r, 500) == "internal error: RuntimeError"
    monkeypatch.undo()
    assert httpx.get(collector.api_url + "/api/v1/rooms", timeout=10).status_code == 200


def test_openapi_documents_the_errors_each_route_gives(collector: Any) -> None:
    """Was: /readyz listed only 200, and errors had no documented shape."""
    doc = httpx.get(collector.api_url + "/openapi.json", timeout=10).json()
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    ref = {"$ref": "#/components/schemas/Error"}
    ready = doc["paths"]["/readyz"]["get"]["responses"]
    assert set(ready) == {"200", "503"}
    assert ready["503"]["content"]["application/json"]["schema"]["properties"] == {"status": {}}
    for path, ops in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for op in ops.values():
            codes = {"400", "500", "503"} | ({"404"} if "{" in path else set())
            assert codes <= set(op["responses"]), path
            for code in codes:
                assert op["responses"][code]["content"]["application/json"]["schema"] == ref
    assert "405" in doc["info"]["description"]
