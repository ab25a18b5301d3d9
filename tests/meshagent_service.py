"""A MeshAgent-style service, run by the meshagent venv's Python 3.13 (tests/meshagent_venv.py).

Configured the way MeshAgent configures its services: ``meshagent.otel.otel_config()`` with
``OTEL_ENDPOINT``, ``MESHAGENT_PROJECT_ID``, ``MESHAGENT_ROOM`` and ``MESHAGENT_SESSION_ID`` in
the environment. It calls tools of a ``meshagent.tools`` toolkit inside one turn span (a slow
one, a fast one, one that fails), logs through the standard logging module, records usage
through MeshAgent's own ``meshagent.usage`` counters, flushes everything, and prints what it
sent as one JSON object.
"""

import asyncio
import json
import logging

from meshagent.api.participant import Participant
from meshagent.openai.tools.usage import track_otel_usage_metrics
from meshagent.otel import otel_config
from meshagent.tools import ToolContext, Toolkit, tool
from opentelemetry import _logs, metrics, trace

SLOW_SECONDS = 0.6
TOKENS = {"input_tokens": 1200.0, "output_tokens": 340.0}


@tool(name="slow_lookup", description="Looks something up, slowly.")
async def slow_lookup(query: str) -> dict:
    await asyncio.sleep(SLOW_SECONDS)
    return {"answer": query.upper()}


@tool(name="echo", description="Says it back.")
async def echo(text: str) -> dict:
    return {"text": text}


@tool(name="explode", description="Always fails.")
async def explode(reason: str) -> dict:
    raise RuntimeError(f"tool failed: {reason}")


async def turn() -> dict:
    toolkit = Toolkit(name="demo", tools=[slow_lookup, echo, explode])
    context = ToolContext(caller=Participant(id="user-1", attributes={"name": "tester"}))
    tracer = trace.get_tracer("roomscope.meshagent_service")
    log = logging.getLogger("meshagent.service")
    with tracer.start_as_current_span("agent.turn") as span:
        log.info("turn started")
        await toolkit.execute(context=context, name="slow_lookup", input={"query": "weather"})
        await toolkit.execute(context=context, name="echo", input={"text": "hello"})
        try:
            await toolkit.execute(context=context, name="explode", input={"reason": "boom"})
        except RuntimeError:
            log.warning("a tool failed", extra={"tool": "explode"})
        track_otel_usage_metrics(model="gpt-test", provider="openai", tokens=TOKENS)
        trace_id = format(span.get_span_context().trace_id, "032x")
    return {
        "trace_id": trace_id,
        "spans": [
            "agent.turn",
            "execute.demo.slow_lookup",
            "execute.demo.echo",
            "execute.demo.explode",
        ],
        "logs": [["INFO", "turn started"], ["WARN", "a tool failed"]],
        "tokens": TOKENS,
        "slow_ns": int(SLOW_SECONDS * 1e9),
    }


def main() -> None:
    otel_config(service_name="meshagent-test-service")
    sent = asyncio.run(turn())
    trace.get_tracer_provider().force_flush()
    _logs.get_logger_provider().force_flush()
    metrics.get_meter_provider().force_flush()
    trace.get_tracer_provider().shutdown()
    _logs.get_logger_provider().shutdown()
    metrics.get_meter_provider().shutdown()
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
