"""Agent usage (SPEC 11) against ground truth sent through the OpenTelemetry SDK exporters:
GenAI spans (token counts as ints and as strings), execute_tool and MeshAgent tool spans,
MeshAgent's ``meshagent.usage`` DELTA counters and the GenAI metrics (cumulative), read by the
library, the CLI (``--db`` and ``--server``) and the API alike."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import RunningCollector, make_reader, make_settings, make_store
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from query.cli import main
from query.http.serving import serving_thread
from query.library.errors import QueryError
from query.library.usage import UsageFilter, parse_prices

MS = 1_000_000
PRICES = {
    "gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0},
}


@dataclass
class Call:
    """One LLM call as the ground truth sees it."""

    room: str
    session: str
    service: str
    model: str | None
    provider: str | None
    input: int
    output: int
    cached: int = 0
    counts_call: bool = True  # a span (True) or metric points (False)


@dataclass
class ToolCall:
    room: str
    session: str
    service: str
    tool: str
    duration_ms: int
    error: bool


@dataclass
class Truth:
    calls: list[Call]
    tools: list[ToolCall]


def _tracer(c: Any, service: str, room: str, session: str) -> TracerProvider:
    res = Resource.create({"service.name": service, "room": room, "session": session})
    tp = TracerProvider(resource=res)
    tp.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=c.grpc_endpoint, insecure=True))
    )
    return tp


def send(c: Any, now: int) -> Truth:
    """Spans and metric points of three services in two rooms and three sessions."""
    truth = Truth([], [])
    t = now - 60_000 * MS
    spans = [
        # room, session, model (response, request), provider key, input, output, cached, as text
        ("lobby", "s1", ("gpt-4o-2024-08-06", "gpt-4o"), "gen_ai.provider.name", 1200, 300, 200,
         False),
        ("lobby", "s1", (None, "gpt-4o"), "gen_ai.system", 800, 100, 0, True),
        ("lobby", "s2", (None, "claude-sonnet-4"), "gen_ai.provider.name", 5000, 700, 0, False),
        ("studio", "s3", (None, "mystery-model"), "gen_ai.provider.name", 90, 10, 0, True),
        ("studio", "s3", (None, "gpt-4o"), "gen_ai.provider.name", 400, 60, 100, False),
    ]  # fmt: skip
    providers = {
        "gpt-4o": "openai",
        "claude-sonnet-4": "anthropic",
        "mystery-model": "acme",
    }
    for i, (room, session, (resp, req), pkey, inp, out, cached, as_text) in enumerate(spans):
        tp = _tracer(c, "agent", room, session)
        tracer = tp.get_tracer("test")
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            pkey: providers[req],
            "gen_ai.request.model": req,
            "gen_ai.usage.input_tokens": str(inp) if as_text else inp,
            "gen_ai.usage.output_tokens": str(out) if as_text else out,
            # MeshAgent puts an agent context id here: never the room session.
            "session_id": f"agent-context-{i}",
        }
        if resp:
            attrs["gen_ai.response.model"] = resp
        if cached:
            attrs["gen_ai.usage.cache_read.input_tokens"] = cached
        span = tracer.start_span(f"chat {req}", attributes=attrs, start_time=t + i * 1000 * MS)
        span.end(end_time=t + (i * 1000 + 500) * MS)
        # An agent span repeating its calls' tokens: not a call, its tokens not added again.
        agent = tracer.start_span(
            "invoke_agent helper",
            attributes={"gen_ai.operation.name": "invoke_agent",
                        "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out},
            start_time=t,
        )  # fmt: skip
        agent.end(end_time=t + 600 * MS)
        model = resp or req
        truth.calls.append(Call(room, session, "agent", model, providers[req], inp, out, cached))
        tp.shutdown()
    tools = [
        ("lobby", "s1", "search", 40, False, "genai"),
        ("lobby", "s1", "search", 80, True, "genai"),
        ("lobby", "s2", "search", 120, False, "genai"),
        ("lobby", "s2", "calendar", 30, False, "mesh"),
        ("studio", "s3", "calendar", 300, True, "mesh"),
        ("studio", "s3", "calendar", 50, False, "mesh"),
    ]
    for i, (room, session, tool, ms, error, style) in enumerate(tools):
        tp = _tracer(c, "tools", room, session)
        tracer = tp.get_tracer("test")
        if style == "genai":
            name, attrs = f"execute_tool {tool}", {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}  # fmt: skip
            full = tool
        else:
            name, attrs = f"execute.kit.{tool}", {
                "toolkit": "kit", "tool": tool, "arguments": "{}", "response_type": "json",
            }  # fmt: skip
            full = f"kit.{tool}"
        start = t + i * 100 * MS
        span = tracer.start_span(name, attributes=attrs, start_time=start)
        if error:
            span.set_status(Status(StatusCode.ERROR, "boom"))
            span.add_event("exception", {"exception.message": "boom"}, start + MS)
        span.end(end_time=start + ms * MS)
        truth.tools.append(ToolCall(room, session, "tools", full, ms, error))
        tp.shutdown()
    # A span named like a MeshAgent tool without toolkit/tool, and one with toolkit and tool
    # but not named execute.<toolkit>.<tool>: no tool calls.
    tp = _tracer(c, "tools", "lobby", "s1")
    tp.get_tracer("t").start_span("execute.nothing", start_time=t).end(end_time=t + MS)
    other = {"toolkit": "kit", "tool": "search"}
    tp.get_tracer("t").start_span("run.kit", attributes=other, start_time=t).end(end_time=t + MS)
    tp.shutdown()
    truth.calls += send_meshagent_turns(c, t)
    truth.calls += send_metrics(c)
    return truth


def send_meshagent_turns(c: Any, t: int) -> list[Call]:
    """MeshAgent's LLM spans as meshagent-openai's Responses adapter makes them: an ``llm.turn``
    (``session_id``: an agent context id) holding, per loop iteration, an ``llm.turn.iteration``
    (``model``, ``provider``) then its sibling ``llm.invoke`` (no attributes: the call). Two
    turns of one trace overlap; an iteration whose request never went out is no call. No
    tokens on any span: mesh-agent's tokens come from its counters (send_metrics)."""
    tp = _tracer(c, "mesh-agent", "studio", "s3")
    tracer = tp.get_tracer("meshagent.openai")
    root = tracer.start_span("agent.turn", start_time=t)
    parent = trace.set_span_in_context(root)
    calls: list[Call] = []
    turns = [("gpt-4o", "openai", [0, 40, 80]), ("claude-sonnet-4", "anthropic", [40])]
    for i, (model, provider, starts) in enumerate(turns):
        attrs = {"session_id": f"agent-context-mesh-{i}", "api": "responses"}
        turn = tracer.start_span("llm.turn", parent, attributes=attrs, start_time=t + i * MS)
        inside = trace.set_span_in_context(turn)
        for n, ms in enumerate(starts):
            start = t + (i + ms) * MS
            attrs = {"model": model, "provider": provider, "parallel_tool_calls": False}
            step = tracer.start_span("llm.turn.iteration", inside, attributes=attrs,
                                     start_time=start)  # fmt: skip
            step.end(end_time=start + 2 * MS)
            if model == "gpt-4o" and n == len(starts) - 1:
                continue  # preparing the request failed: no llm.invoke, no call
            invoke = tracer.start_span("llm.invoke", inside, start_time=start + 3 * MS)
            tool = tracer.start_span(
                "llm.handle_tool_call", trace.set_span_in_context(invoke),
                attributes={"name": "search"}, start_time=start + 20 * MS,
            )  # fmt: skip
            tool.end(end_time=start + 25 * MS)
            invoke.end(end_time=start + 30 * MS)
            calls.append(Call("studio", "s3", "mesh-agent", model, provider, 0, 0))
        turn.end(end_time=t + (i + 200) * MS)
    root.end(end_time=t + 300 * MS)
    tp.shutdown()
    return calls


def _meter(c: Any, service: str, room: str, session: str, delta: bool) -> MeterProvider:
    temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
    exporter = OTLPMetricExporter(
        endpoint=c.grpc_endpoint,
        insecure=True,
        preferred_temporality={Counter: temporality, Histogram: temporality},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    res = Resource.create({"service.name": service, "room": room, "session": session})
    return MeterProvider(resource=res, metric_readers=[reader])


def send_metrics(c: Any) -> list[Call]:
    """MeshAgent's usage counters (DELTA, two exports), the GenAI metrics (CUMULATIVE, two
    exports), and a service whose spans carry tokens and whose metrics must be ignored."""
    calls: list[Call] = []
    # As meshagent-openai's track_otel_usage_metrics sends them: floats, model and provider.
    mp = _meter(c, "mesh-agent", "studio", "s3", delta=True)
    meter = mp.get_meter("meshagent.usage")
    counters = {n: meter.create_counter(n, "tokens") for n in (
        "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
        "reasoning_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
        "total_tokens")}  # fmt: skip
    openai = {"model": "gpt-4o", "provider": "openai", "annotation.agent": "a"}
    anthropic = {"model": "claude-sonnet-4", "provider": "anthropic"}
    for batch in ({"input_tokens": 1000.0, "cached_tokens": 500.0, "cache_write_tokens": 100.0,
                   "output_tokens": 250.0, "reasoning_tokens": 90.0, "total_tokens": 1850.0},
                  {"input_tokens": 10.0, "output_tokens": 5.0}):  # fmt: skip
        for name, value in batch.items():
            counters[name].add(value, openai)
        mp.force_flush()
    calls.append(Call("studio", "s3", "mesh-agent", "gpt-4o", "openai", 1610, 255, 500, False))
    for name, value in (("input_tokens", 20.0), ("cache_read_input_tokens", 300.0),
                        ("cache_creation_input_tokens", 40.0), ("output_tokens", 7.0)):  # fmt: skip
        counters[name].add(value, anthropic)
    mp.shutdown()
    calls.append(
        Call("studio", "s3", "mesh-agent", "claude-sonnet-4", "anthropic", 360, 7, 300, False)
    )
    # A meshagent.usage-named counter outside the meshagent.usage scope: not usage.
    mp = _meter(c, "mesh-agent", "studio", "s3", delta=True)
    mp.get_meter("other").create_counter("input_tokens").add(999_999, openai)
    mp.shutdown()
    # The GenAI client metrics, cumulative (the SDK's default): exported twice.
    mp = _meter(c, "genai-metrics", "lobby", "s2", delta=False)
    meter = mp.get_meter("genai")
    usage = meter.create_histogram("gen_ai.client.token.usage", "{token}")
    duration = meter.create_histogram("gen_ai.client.operation.duration", "s")
    attrs = {"gen_ai.request.model": "claude-sonnet-4", "gen_ai.provider.name": "anthropic"}
    for inp, out in ((300, 40), (200, 10)):
        usage.record(inp, {**attrs, "gen_ai.token.type": "input"})
        usage.record(out, {**attrs, "gen_ai.token.type": "output"})
        duration.record(0.4, attrs)
        mp.force_flush()
    mp.shutdown()
    calls.append(Call("lobby", "s2", "genai-metrics", "claude-sonnet-4", "anthropic", 300, 40))
    calls.append(Call("lobby", "s2", "genai-metrics", "claude-sonnet-4", "anthropic", 200, 10))
    # "agent" has token counts on its spans: its token metrics are never added as well.
    mp = _meter(c, "agent", "lobby", "s1", delta=True)
    h = mp.get_meter("genai").create_histogram("gen_ai.client.token.usage")
    h.record(77_777, {"gen_ai.request.model": "gpt-4o", "gen_ai.token.type": "input"})
    mp.shutdown()
    # ... but in a session where its spans carry none, its token metrics count.
    mp = _meter(c, "agent", "studio", "s4", delta=True)
    h = mp.get_meter("genai").create_histogram("gen_ai.client.token.usage")
    attrs = {"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"}
    h.record(500, {**attrs, "gen_ai.token.type": "input"})
    h.record(60, {**attrs, "gen_ai.token.type": "output"})
    mp.shutdown()
    calls.append(Call("studio", "s4", "agent", "gpt-4o", "openai", 500, 60, 0, False))
    return calls


def cost(calls: list[Call]) -> float | None:
    total = 0.0
    for c in calls:
        name = "gpt-4o" if c.model and c.model.startswith("gpt-4o") else c.model
        price = PRICES.get(name or "")
        if price is None:
            return None
        cached_price = price.get("cached_input", price["input"])
        total += (c.input - c.cached) * price["input"] + c.cached * cached_price
        total += c.output * price["output"]
    return round(total / 1e6, 6)


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (DuckDB's quantile_cont)."""
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def expected(truth: Truth, by: str) -> dict[Any, dict[str, Any]]:
    field = {"model": "model", "provider": "provider", "room": "room", "session": "session",
             "service": "service", "tool": None}[by]  # fmt: skip
    calls: dict[Any, list[Call]] = defaultdict(list)
    tools: dict[Any, list[ToolCall]] = defaultdict(list)
    for c in truth.calls:
        calls[getattr(c, field) if field else None].append(c)
    for t in truth.tools:
        key = getattr(t, field) if field in ("room", "session", "service") else None
        tools[t.tool if by == "tool" else key].append(t)
    rows = {}
    for key in set(calls) | set(tools):
        cs, ts = calls.get(key, []), tools.get(key, [])
        durations = [t.duration_ms for t in ts]
        errors = sum(t.error for t in ts)
        rows[key] = {
            "llm_calls": sum(c.counts_call for c in cs),
            "input_tokens": sum(c.input for c in cs),
            "cached_input_tokens": sum(c.cached for c in cs),
            "output_tokens": sum(c.output for c in cs),
            "cost_usd": cost(cs) if cs else 0.0,
            "unpriced_calls": sum(c.counts_call for c in cs if cost([c]) is None),
            "tool_calls": len(ts),
            "tool_errors": errors,
            "tool_error_rate": round(errors / len(ts), 4) if ts else None,
            "tool_p50_ms": round(_quantile(durations, 0.5), 3) if ts else None,
            "tool_p95_ms": round(_quantile(durations, 0.95), 3) if ts else None,
        }
    return rows


def _by_key(result: dict[str, Any], by: str) -> dict[Any, dict[str, Any]]:
    rows = {}
    for row in result["usage"]:
        row = dict(row)
        rows[row.pop(by)] = row
    return rows


def _close(got: dict[Any, dict[str, Any]], want: dict[Any, dict[str, Any]]) -> None:
    assert set(got) == set(want)
    for key, row in want.items():
        for field, value in row.items():
            if isinstance(value, float):
                assert got[key][field] == pytest.approx(value, abs=1e-6), (key, field)
            else:
                assert got[key][field] == value, (key, field)


class Usage:
    def __init__(self, db: Path):
        self.db = db
        self.thread = serving_thread(make_settings(db, **{"usage.prices": PRICES}))
        self.collector = self.thread.start()
        self.c = RunningCollector(self.thread, db)

    @property
    def api(self) -> str:
        return self.c.api_url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Usage, Truth]]:
    u = Usage(tmp_path_factory.mktemp("usage") / "usage.duckdb")
    try:
        truth = send(u.c, time.time_ns())
        yield u, truth
    finally:
        u.thread.stop()


def _reader(u: Usage) -> Any:
    return make_reader(u.c.collector.store.cursor(), prices=parse_prices(PRICES))


@pytest.mark.parametrize("by", ["model", "provider", "room", "session", "service", "tool"])
def test_usage_per_key_equals_what_was_sent(world: tuple[Usage, Truth], by: str) -> None:
    u, truth = world
    result = _reader(u).usage(UsageFilter(by=by))
    _close(_by_key(result, by), expected(truth, by))
    api = httpx.get(f"{u.api}/api/v1/usage", params={"by": by}, timeout=30)
    assert api.status_code == 200
    assert api.json() == json.loads(json.dumps(result))


def test_usage_by_hour_adds_up_to_the_totals(world: tuple[Usage, Truth]) -> None:
    u, truth = world
    result = _reader(u).usage(UsageFilter(by="hour"))
    hours = [r["hour"] for r in result["usage"]]
    assert hours == sorted(hours) and all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", h) for h in hours
    )
    for field in ("llm_calls", "input_tokens", "output_tokens", "tool_calls", "tool_errors"):
        assert sum(r[field] for r in result["usage"]) == result["totals"][field]
    assert result["totals"]["input_tokens"] == sum(c.input for c in truth.calls)


def test_unknown_models_are_unpriced_never_zero(world: tuple[Usage, Truth]) -> None:
    u, _ = world
    result = _reader(u).usage(UsageFilter(by="model"))
    rows = _by_key(result, "model")
    assert rows["mystery-model"]["cost_usd"] is None
    assert rows["mystery-model"]["unpriced_calls"] == 1
    assert rows["gpt-4o-2024-08-06"]["cost_usd"] is not None  # priced as gpt-4o
    assert result["unpriced_models"] == ["mystery-model"]
    assert result["totals"]["cost_usd"] is None
    studio = _reader(u).usage(UsageFilter(by="room", room="studio"))
    assert _by_key(studio, "room")["studio"]["cost_usd"] is None
    lobby = _by_key(_reader(u).usage(UsageFilter(by="room", room="lobby")), "room")["lobby"]
    assert lobby["cost_usd"] == pytest.approx(
        cost([c for c in world[1].calls if c.room == "lobby"])
    )


def test_filters_and_the_llm_turn_session_id_attribute(world: tuple[Usage, Truth]) -> None:
    u, truth = world
    r = _reader(u)
    s1 = r.usage(UsageFilter(by="session", session="s1"))
    want = expected(Truth([c for c in truth.calls if c.session == "s1"],
                          [t for t in truth.tools if t.session == "s1"]), "session")  # fmt: skip
    _close(_by_key(s1, "session"), want)
    # An unknown session has no usage (as a search finds no spans), not a 404.
    assert r.usage(UsageFilter(session="agent-context-0"))["usage"] == []
    assert r.usage(UsageFilter(project="nobody"))["usage"] == []
    assert r.usage(UsageFilter(since=9_000_000_000_000_000_000))["usage"] == []
    with pytest.raises(QueryError):
        r.usage(UsageFilter(by="colour"))


def test_session_summary_carries_its_usage(world: tuple[Usage, Truth]) -> None:
    u, truth = world
    got = _reader(u).session("s3")["usage"]
    calls = [c for c in truth.calls if c.session == "s3"]
    assert got["input_tokens"] == sum(c.input for c in calls)
    assert got["output_tokens"] == sum(c.output for c in calls)
    assert got["llm_calls"] == sum(c.counts_call for c in calls)
    assert got["cost_usd"] is None and got["unpriced_models"] == ["mystery-model"]
    assert got["tool_calls"] == sum(t.session == "s3" for t in truth.tools)
    api = httpx.get(f"{u.api}/api/v1/sessions/s1", timeout=30).json()
    s1 = [c for c in truth.calls if c.session == "s1"]
    assert api["usage"]["cost_usd"] == pytest.approx(cost(s1))
    out = CliRunner().invoke(main, ["--server", u.api, "session", "get", "s1"])
    assert out.exit_code == 0, out.output
    assert f"{sum(c.input for c in s1)} input + {sum(c.output for c in s1)} output" in out.output


def test_paging_by_cursor_gives_every_row_once(world: tuple[Usage, Truth]) -> None:
    u, truth = world
    seen: list[Any] = []
    params: dict[str, Any] = {"by": "model", "limit": 2}
    while True:
        page = httpx.get(f"{u.api}/api/v1/usage", params=params, timeout=30).json()
        assert len(page["usage"]) <= 2
        seen += [row["model"] for row in page["usage"]]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert sorted(seen, key=lambda k: (k is None, k or "")) == seen
    assert set(seen) == set(expected(truth, "model")) and len(seen) == len(set(seen))


@pytest.mark.parametrize(
    "params",
    [{"by": "colour"}, {"cursor": "!!"}, {"limit": "0"}, {"since": "yesterday"}, {"x": "1"}],
)
def test_bad_parameters_are_400_json(world: tuple[Usage, Truth], params: dict[str, str]) -> None:
    r = httpx.get(f"{world[0].api}/api/v1/usage", params=params, timeout=30)
    assert r.status_code == 400 and set(r.json()) == {"error"}


def test_cli_usage_over_server_and_db_agree(world: tuple[Usage, Truth], tmp_path: Path) -> None:
    u, truth = world
    runner = CliRunner()
    remote = runner.invoke(main, ["--server", u.api, "usage", "--by", "room", "-o", "json"])
    assert remote.exit_code == 0, remote.output
    _close(_by_key(json.loads(remote.output), "room"), expected(truth, "room"))
    table = runner.invoke(main, ["--server", u.api, "usage", "--by", "tool"])
    assert table.exit_code == 0 and table.output.splitlines()[0].split()[:2] == ["TOOL", "CALLS"]
    assert "kit.calendar" in table.output
    csv = runner.invoke(main, ["--server", u.api, "usage", "--by", "model", "-o", "csv"])
    assert csv.output.splitlines()[0].startswith("model,llm_calls,input_tokens")
    bad = runner.invoke(main, ["--server", u.api, "usage", "--by", "colour"])
    assert bad.exit_code == 2
    # The same file read directly, with the prices from a config file.
    config = tmp_path / "prices.toml"
    config.write_text(
        '[usage.prices."gpt-4o"]\ninput = 2.5\noutput = 10.0\ncached_input = 1.25\n'
        '[usage.prices."claude-sonnet-4"]\ninput = 3.0\noutput = 15.0\n'
    )
    u.thread.stop()
    try:
        local = runner.invoke(
            main,
            ["--config", str(config), "--db", str(u.db), "usage", "--by", "room", "-o", "json"],
        )
        assert local.exit_code == 0, local.output
        assert json.loads(local.output) == json.loads(remote.output)
        none = runner.invoke(main, ["--db", str(u.db), "usage", "--room", "nowhere"])
        assert none.exit_code == 0 and "no usage found" in none.output
    finally:
        u.thread = serving_thread(make_settings(u.db, **{"usage.prices": PRICES}))
        u.collector = u.thread.start()
        u.c = RunningCollector(u.thread, u.db)


def test_a_bad_price_table_names_the_setting(tmp_path: Path) -> None:
    from collector.errors import SettingsError
    from collector.settings import load_settings

    for text in (
        '[usage.prices."m"]\ninput = 1\n',
        '[usage.prices."m"]\ninput = "1"\noutput = 2\n',
        '[usage.prices."m"]\ninput = 1\noutput = 2\nextra = 3\n',
        "[usage]\nprices = 3\n",
    ):
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(SettingsError, match=r"invalid setting usage\.prices"):
            load_settings(path, env={})
    env = {"ROOMSCOPE_USAGE_PRICES": '{"m": {"input": 1, "output": 2}}'}
    assert load_settings(env=env).get("usage.prices") == {"m": {"input": 1, "output": 2}}
    with pytest.raises(SettingsError, match=r"usage\.prices"):
        load_settings(env={"ROOMSCOPE_USAGE_PRICES": "{not json"})


def test_archived_spans_count_the_same(tmp_path: Path) -> None:
    """After compaction moves spans into span_archive (values in columns v1..v16, the rest in a
    list), usage reads the same: GenAI keys at low positions and past the 16th."""
    from otlp_factory import kv, trace_request
    from test_span_storage import write

    from collector.store.maintenance.compaction import compact_all

    hour = 3_600 * 10**9
    base = (time.time_ns() - 30 * hour) // hour * hour
    store = make_store(tmp_path / "a.duckdb")
    store.open()
    for h, padding in enumerate((0, 20)):  # the GenAI keys after 20 others: past position 16
        req = trace_request(12, room="lobby", session="s-a", start_ns=base + h * hour, seed=h)
        for i, span in enumerate(req.resource_spans[0].scope_spans[0].spans):
            del span.attributes[:]
            span.attributes.extend(kv(f"pad.{j}", "x") for j in range(padding))
            if i % 2:
                span.attributes.extend([kv("gen_ai.operation.name", "chat"),
                    kv("gen_ai.request.model", "gpt-4o"),
                    kv("gen_ai.usage.input_tokens", 100 + i),
                    kv("gen_ai.usage.output_tokens", str(10 + i))])  # fmt: skip
            else:
                span.attributes.extend([kv("gen_ai.operation.name", "execute_tool"),
                                        kv("gen_ai.tool.name", f"t{i % 4}")])  # fmt: skip
        write(store, req)
    prices = parse_prices(PRICES)
    before = make_reader(store.cursor(), prices=prices).usage(UsageFilter(by="tool"))
    assert before["totals"]["llm_calls"] == 12 and before["totals"]["tool_calls"] == 12
    assert before["totals"]["input_tokens"] == 2 * sum(100 + i for i in range(1, 12, 2))
    assert compact_all(store, 1, 0, now_ns=base + 5 * hour) == 24
    (archived,) = store.cursor().execute("SELECT count(*) FROM span_archive").fetchone()
    assert archived == 24
    assert make_reader(store.cursor(), prices=prices).usage(UsageFilter(by="tool")) == before
    store.close()
