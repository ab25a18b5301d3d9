"""LLM calls from MeshAgent's own spans, as its real OpenAI Responses adapter sends them.

``meshagent-openai``'s ``OpenAIResponsesAdapter.create_response`` (PyPI, Python 3.13, the venv of
tests/meshagent_venv.py) runs against a fake OpenAI Responses endpoint in the same process:
each turn is an ``llm.turn`` span (``session_id``: the agent context's id) holding an
``llm.turn.iteration`` (``model``, ``provider``) and its sibling ``llm.invoke`` (no attributes),
and the adapter's own ``_store_usage`` sends the tokens as ``meshagent.usage`` counters. One
``llm.invoke`` is one call, with the model of its iteration; tokens come from the counters.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from typing import Any

import pytest
from conftest import make_reader
from meshagent_venv import VenvError, ensure_venv

from query.library.usage import UsageFilter, parse_prices

AGENT = textwrap.dedent(
    """
    import asyncio, json, sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import meshagent.otel
    meshagent.otel.otel_config(service_name="mesh-agent")
    from opentelemetry import metrics, trace
    from meshagent.openai import OpenAIResponsesAdapter

    TURNS = json.loads(sys.argv[1])

    class OpenAI(BaseHTTPRequestHandler):
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            usage = {m: u for m, u in TURNS}[request["model"]]
            if usage is None:
                status, answer = 400, {"error": {"message": "no such model", "type": "invalid"}}
            else:
                status, answer = 200, {
                    "id": "resp_1", "object": "response", "created_at": 0,
                    "model": request["model"], "status": "completed",
                    "output": [{"type": "message", "id": "msg_1", "role": "assistant",
                                "status": "completed", "content": [
                                    {"type": "output_text", "text": "hi", "annotations": []}]}],
                    "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
                    "usage": usage}
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), OpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    async def turns():
        adapter = OpenAIResponsesAdapter(
            mode="request", max_retries=0, api_key="test",
            base_url=f"http://127.0.0.1:{server.server_port}/v1")
        for model, _ in TURNS:
            context = adapter.create_session()
            try:
                await adapter.create_response(model=model, context=context, caller=None,
                                              toolkits=[])
            except Exception as exc:  # the failing model: MeshAgent raises a RoomException
                print("failed:", type(exc).__name__, file=sys.stderr)
            print(context.id)

    asyncio.run(turns())
    trace.get_tracer_provider().force_flush()
    metrics.get_meter_provider().force_flush()
    metrics.get_meter_provider().shutdown()
    trace.get_tracer_provider().shutdown()
    """
)

# (model, the usage object the fake OpenAI answers with; None: it answers 400)
TURNS: list[list[Any]] = [
    ["gpt-4o", {"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 400},
                "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 120},
                "total_tokens": 1800}],
    ["gpt-4o-mini", {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}],
    ["no-such-model", None],
]  # fmt: skip
TURNS.append(["gpt-4o", TURNS[0][1]])  # the same model again: one more call, its tokens again
PRICES = {"gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25}}


def test_meshagent_llm_invoke_spans_are_its_calls(start_collector: Any) -> None:
    try:
        venv = ensure_venv()
    except VenvError as exc:
        pytest.fail(str(exc))
    c = start_collector(**{"usage.prices": PRICES})
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OTEL_ENDPOINT": c.http_url,
        "MESHAGENT_PROJECT_ID": "proj-m",
        "MESHAGENT_ROOM": "room-m",
        "MESHAGENT_SESSION_ID": "sess-m",
    }
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", AGENT, json.dumps(TURNS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("failed: RoomException") == 1, done.stderr
    contexts = done.stdout.split()
    reader = make_reader(c.collector.store.cursor(), prices=parse_prices(PRICES))
    names = reader.sql("SELECT name, count(*) AS n FROM spans GROUP BY name")
    count = dict(names["rows"])  # and llm.handle_response, llm.turn.check_for_termination
    assert [count[n] for n in ("llm.turn", "llm.turn.iteration", "llm.invoke")] == [4, 4, 4]
    result = reader.usage(UsageFilter(by="model", session="sess-m"))
    rows = {r["model"]: r for r in result["usage"]}
    assert {m: r["llm_calls"] for m, r in rows.items()} == {
        "gpt-4o": 2, "gpt-4o-mini": 1, "no-such-model": 1,
    }  # fmt: skip
    gpt = rows["gpt-4o"]
    assert (gpt["input_tokens"], gpt["cached_input_tokens"], gpt["output_tokens"]) == (
        3000,
        800,
        600,
    )
    assert gpt["cost_usd"] == pytest.approx(2 * (1100 * 2.5 + 400 * 1.25 + 300 * 10.0) / 1e6)
    mini = rows["gpt-4o-mini"]
    assert (mini["input_tokens"], mini["output_tokens"], mini["cost_usd"]) == (100, 20, None)
    assert rows["no-such-model"]["input_tokens"] == 0
    assert result["unpriced_models"] == ["gpt-4o-mini", "no-such-model"]
    assert result["totals"]["llm_calls"] == 4 and result["totals"]["unpriced_calls"] == 2
    by_provider = reader.usage(UsageFilter(by="provider", room="room-m"))["usage"]
    assert [(r["provider"], r["llm_calls"]) for r in by_provider] == [("openai", 4)]
    # The llm.turn spans' session_id attribute (the agent context id) is not a session.
    assert len(contexts) == 4
    assert all(reader.usage(UsageFilter(session=x))["usage"] == [] for x in contexts)
    summary = reader.session("sess-m")["usage"]
    assert (summary["llm_calls"], summary["input_tokens"]) == (4, 3100)
