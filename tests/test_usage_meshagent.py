"""Agent usage from MeshAgent as MeshAgent really sends it: the real ``meshagent-otel`` package
(PyPI, Python 3.13) configures the OpenTelemetry SDK from ``OTEL_ENDPOINT`` and
``MESHAGENT_*`` (DELTA counters every second over OTLP/HTTP), and MeshAgent's own usage helpers
(``meshagent-openai`` and ``meshagent-anthropic``: ``preprocess_*_usage`` then
``track_otel_usage_metrics``) turn provider usage objects into its ``meshagent.usage`` counters.

The Python 3.13 virtualenv is built once in ``~/.cache/roomscope-tests/`` (a file lock keeps
parallel runs from building it twice); without Python 3.13 or PyPI the test is skipped, saying
why. The usage helpers are loaded from the installed packages' own files (their packages'
``__init__`` pull in the whole agent framework, which the helpers do not need).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import make_reader

from query.library.usage import UsageFilter, parse_prices

VERSION = "0.56.0"
CACHE = Path.home() / ".cache" / "roomscope-tests" / f"usage-meshagent-otel-{VERSION}"
PACKAGES = [f"meshagent-otel=={VERSION}", "pydantic>=2"]
HELPERS = [f"meshagent-openai=={VERSION}", f"meshagent-anthropic=={VERSION}"]


def meshagent_python() -> Path:
    """The venv's python, built on first use (skip when it cannot be built)."""
    python = CACHE / "venv" / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (CACHE / "ready").exists():
            return python
        if shutil.which("python3.13") is None:
            pytest.skip("python3.13 not found (pyenv 3.13.0)")
        shutil.rmtree(CACHE / "venv", ignore_errors=True)
        env = {**os.environ, "PYENV_VERSION": "3.13.0"}
        steps = [
            ["python3.13", "-m", "venv", str(CACHE / "venv")],
            [str(python), "-m", "pip", "install", "-q", *PACKAGES],
            [str(python), "-m", "pip", "install", "-q", "--no-deps", *HELPERS],
        ]
        for step in steps:
            done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.skip(f"cannot build the meshagent venv: {done.stderr.strip()[-300:]}")
        (CACHE / "ready").write_text("ok\n")
    return python


# Run in the Python 3.13 venv: MeshAgent's telemetry set-up and usage helpers, as an agent
# calls them after an OpenAI Responses call and an Anthropic Messages call, and two tool spans
# named as MeshAgent's toolkits name them.
AGENT = textwrap.dedent(
    """
    import importlib.util, json, logging, sys
    from pathlib import Path
    import meshagent.otel
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Status, StatusCode

    meshagent.otel.otel_config(service_name="mesh-agent")
    root = Path(meshagent.otel.__file__).parent.parent

    def helpers(name, path):
        spec = importlib.util.spec_from_file_location(name, root / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    openai = helpers("mesh_openai_usage", "openai/tools/usage.py")
    anthropic = helpers("mesh_anthropic_usage", "anthropic/usage.py")
    calls = json.loads(sys.argv[1])
    for provider, model, usage in calls:
        mod = openai if provider == "openai" else anthropic
        tokens = getattr(mod, f"preprocess_{provider}_usage")(model=model, usage=usage)
        mod.track_otel_usage_metrics(model=model, provider=provider, tokens=tokens,
                                     annotations={"agent": "helper"})
    tracer = trace.get_tracer("meshagent.tools")
    for tool, fails in (("search", False), ("search", True)):
        with tracer.start_as_current_span(f"execute.web.{tool}") as span:
            span.set_attributes({"toolkit": "web", "tool": tool, "arguments": "{}",
                                 "response_type": "json"})
            if fails:
                span.set_status(Status(StatusCode.ERROR, "failed"))
                span.record_exception(RuntimeError("failed"))
    with tracer.start_as_current_span("llm.turn") as span:
        span.set_attributes({"session_id": "agent-context-1", "api": "responses"})
    trace.get_tracer_provider().force_flush()
    metrics.get_meter_provider().force_flush()
    metrics.get_meter_provider().shutdown()
    trace.get_tracer_provider().shutdown()
    """
)

CALLS: list[list[Any]] = [
    # An OpenAI Responses usage object: 1,500 input tokens of which 400 cached; reasoning is a
    # part of the 300 output tokens.
    ["openai", "gpt-4o", {"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 400},
                          "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 120},
                          "total_tokens": 1800}],
    ["openai", "gpt-4o", {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}],
    # An Anthropic Messages usage object: uncached, cache reads and cache writes.
    ["anthropic", "claude-sonnet-4-5", {"input_tokens": 50, "cache_read_input_tokens": 1000,
                                        "cache_creation_input_tokens": 200,
                                        "output_tokens": 80}],
]  # fmt: skip
PRICES = {"gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25}}


def test_meshagent_usage_counters_as_meshagent_sends_them(start_collector: Any) -> None:
    python = meshagent_python()
    c = start_collector(**{"usage.prices": PRICES})
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OTEL_ENDPOINT": c.http_url,
        "MESHAGENT_PROJECT_ID": "proj-m",
        "MESHAGENT_ROOM": "room-m",
        "MESHAGENT_SESSION_ID": "sess-m",
    }
    done = subprocess.run(
        [str(python), "-c", AGENT, json.dumps(CALLS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    reader = make_reader(c.collector.store.cursor(), prices=parse_prices(PRICES))
    result = reader.usage(UsageFilter(by="model", session="sess-m"))
    rows = {r["model"]: r for r in result["usage"]}
    gpt, claude = rows["gpt-4o"], rows["claude-sonnet-4-5"]
    assert (gpt["input_tokens"], gpt["cached_input_tokens"], gpt["output_tokens"]) == (
        1600,
        400,
        320,
    )
    assert gpt["cost_usd"] == pytest.approx((1200 * 2.5 + 400 * 1.25 + 320 * 10.0) / 1e6)
    assert (claude["input_tokens"], claude["cached_input_tokens"], claude["output_tokens"]) == (
        1250,
        1000,
        80,
    )
    assert claude["cost_usd"] is None and result["unpriced_models"] == ["claude-sonnet-4-5"]
    # MeshAgent puts no token counts on spans and no GenAI call spans: no calls counted.
    assert gpt["llm_calls"] == 0 and claude["llm_calls"] == 0
    tools = reader.usage(UsageFilter(by="tool", room="room-m", project="proj-m"))
    web = {r["tool"]: r for r in tools["usage"]}["web.search"]
    assert (web["tool_calls"], web["tool_errors"], web["tool_error_rate"]) == (2, 1, 0.5)
    # Its llm.turn span's session_id attribute (an agent context id) is not a session.
    assert reader.usage(UsageFilter(session="agent-context-1"))["usage"] == []
    assert reader.usage(UsageFilter(by="session"))["usage"][0]["session"] == "sess-m"
