"""TraceQL spanset filters (SPEC 9): the parser, its errors with positions, the forms Grafana's
query builder writes answered like the sent spans say, and the same rows as the CLI's filters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from click.testing import CliRunner
from conftest import BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_query_fixtures import World, filled_world

from query.cli import main
from query.library.traceql import Cond, Field, Group, TraceQLError, Value, parse
from query.library.traceql_sql import condition

SEC = 1_000_000_000
MS = 1_000_000
KIND = {"agent.turn": "server", "llm.call": "client"}


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    yield from filled_world(tmp_path_factory, request)


def search(w: World, q: str, **params: object) -> httpx.Response:
    return httpx.get(
        w.api_url + "/api/v1/traces", params={"q": q, "limit": 10000, **params}, timeout=30
    )


def kind(s) -> str:
    return KIND.get(s.name, "internal")


# Each form Grafana's Tempo query builder writes (and a few more), with what it means on the
# spans the test sent.
FORMS: list[tuple[str, Callable]] = [
    ("{}", lambda s: True),
    (
        '{resource.service.name="agent" && name="agent.turn" && duration>1s && status=error}',
        lambda s: (
            s.service == "agent"
            and s.name == "agent.turn"
            and s.duration_ns > SEC
            and s.status == "ERROR"
        ),
    ),
    (
        '{resource.service.name="tools" && status=error}',
        lambda s: s.service == "tools" and s.status == "ERROR",
    ),
    (
        '{resource.room =~ "lobby|qa"}',
        lambda s: s.room in ("lobby", "qa"),
    ),
    ('{span.tool=~"search|render"}', lambda s: s.attributes.get("tool") in ("search", "render")),
    (
        '{ span.tool !~ "search|render" }',
        lambda s: s.attributes.get("tool") not in (None, "search", "render"),
    ),
    (
        '{ (resource.room = "studio" && duration >= 500ms) || status = error }',
        lambda s: (s.room == "studio" and s.duration_ns >= 500 * MS) or s.status == "ERROR",
    ),
    (
        '{ name != "llm.call" && kind = server }',
        lambda s: s.name != "llm.call" and kind(s) == "server",
    ),
    ("{ kind = client }", lambda s: kind(s) == "client"),
    ('{ .tool = "calendar" }', lambda s: s.attributes.get("tool") == "calendar"),
    ('{ span.status = "error" }', lambda s: s.attributes.get("status") == "error"),
    ("{ span.llm.tokens > 300 }", lambda s: float(s.attributes.get("llm.tokens", 0)) > 300),
    (
        "{ span.tool != nil && duration < 100ms }",
        lambda s: "tool" in s.attributes and s.duration_ns < 100 * MS,
    ),
    ("{ status = ok }", lambda s: s.status == "OK"),
    (
        '{ status != error && resource.room = "support" }',
        lambda s: s.status != "ERROR" and s.room == "support",
    ),
    ('{ room = "qa" }', lambda s: s.room == "qa"),
    ('{ name =~ "tool" }', lambda s: False),  # regexes match the whole value, as Tempo's
    ('{ name =~ "tool[.].*" }', lambda s: s.name.startswith("tool.")),
    ('{ resource.service.name = "nobody" }', lambda s: False),
    ('{ span.no.such.key = "x" }', lambda s: False),
]


@pytest.mark.parametrize("q,want", FORMS, ids=[q for q, _ in FORMS])
def test_grafana_builder_forms_find_exactly_the_sent_spans(world: World, q: str, want) -> None:
    r = search(world, q)
    assert r.status_code == 200, r.text
    got = {s["span_id"] for s in r.json()["spans"]}
    expected = {s.span_id for s in world.manifest.spans if want(s)}
    assert got == expected


def test_traceql_returns_what_the_equivalent_cli_filters_return(world: World) -> None:
    runner = CliRunner()
    pairs = [
        (
            ["-q", '{ resource.room = "lobby" && duration >= 1s && status = error }'],
            ["--room", "lobby", "--min-duration", "1s", "--attrs", "status=error"],
        ),
        (["-q", '{ resource.service.name = "tools" }'], ["--service", "tools"]),
        (["-q", '{ span.tool = "search" && duration <= 150ms }'],
         ["--attrs", "tool=search", "--max-duration", "150ms"]),
        (["-q", "{ room = \"qa\" && session = \"qa-1\" }"], ["--room", "qa", "--session", "qa-1"]),
    ]  # fmt: skip
    for ql, cli in pairs:
        a = runner.invoke(main, ["--server", world.api_url, "traces", *ql, "-o", "json"])
        b = runner.invoke(main, ["--server", world.api_url, "traces", *cli, "-o", "json"])
        assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
        spans = json.loads(a.output)["spans"]
        assert spans and spans == json.loads(b.output)["spans"]
    with world.local() as store:
        a = runner.invoke(main, [*store, "traces", *pairs[0][0], "-o", "json"])
        b = runner.invoke(main, [*store, "traces", *pairs[0][1], "-o", "json"])
        assert a.exit_code == 0 and json.loads(a.output) == json.loads(b.output)


UNSUPPORTED = [
    ("{ } | count() > 2", "pipelines (|) are not supported at position 5"),
    (
        '{ name = "a" } >> { name = "b" }',
        "structural operators (>>) are not supported at position 16",
    ),
    (
        '{ name = "a" } ~ { name = "b" }',
        "structural operators (~) are not supported at position 16",
    ),
    ('{ name = "a" } && { name = "b" }', "spanset operators (&& between {}) are not supported"),
    ("count() > 2", "aggregates (count()) are not supported at position 1"),
    ("{ duration + 1s > 2s }", "arithmetic (+) is not supported at position 12"),
    ('{ name = "a"', "expected '&&', '||' or '}', found the end of the query at position 13"),
    ("{ duration > 1 }", "duration compares with a duration, not a number at position 12"),
    ('{ tool = "x" }', "unknown intrinsic 'tool'"),
    ('{ span.x =~ "(" }', "invalid regular expression: missing ): ("),
    ('{ span.x !~ "(?=a)" }', "invalid regular expression: invalid perl operator"),
    ('{ event.name = "x" }', "event. attributes are not supported at position 3"),
    ("", "empty query"),
    ("{ status > error }", "status compares only with = or !="),
]


@pytest.mark.parametrize("q,message", UNSUPPORTED)
def test_unsupported_traceql_is_a_400_and_a_usage_error_naming_what_and_where(
    world: World, q: str, message: str
) -> None:
    with pytest.raises(TraceQLError, match=None) as err:
        parse(q)
    assert message in str(err.value)
    r = search(world, q)
    assert r.status_code == 400 and message in r.json()["error"]
    if q:  # Tempo's /api/search takes an empty q as {}
        r = httpx.get(world.api_url + "/api/search", params={"q": q}, timeout=30)
        assert r.status_code == 400 and message in r.json()["error"]
    out = CliRunner().invoke(main, ["--server", world.api_url, "traces", "-q", q])
    assert out.exit_code == 2 and message in out.output


def test_the_tree_keeps_precedence_and_groups() -> None:
    tree = parse('{ span.a = "1" || span.b = 2 && (kind = server || status = error) }')
    assert isinstance(tree, Group) and tree.op == "||"
    left, right = tree.items
    assert left == Cond(Field("span", "a"), "=", Value("string", "1"))
    assert isinstance(right, Group) and right.op == "&&"
    assert isinstance(right.items[1], Group) and right.items[1].op == "||"
    assert parse('{ span."a b" = "x\\"y" }') == Cond(
        Field("span", "a b"), "=", Value("string", 'x"y')
    )
    assert parse("{ trace:duration > 1.5s }") == Cond(
        Field("intrinsic", "traceDuration"), ">", Value("duration", 1_500_000_000)
    )


_ATOMS = st.sampled_from(
    ["{", "}", "(", ")", "&&", "||", "|", ">>", "~", "=", "!=", "=~", "!~", ">", "<=", "span.x",
     "resource.room", ".tool", "name", "status", "duration", "kind", "error", "server", '"a|b"',
     '"x\\"', "1.5s", "250ms", "-3", "1e9", "true", "nil", "count()", "`raw`", "span.\"q\"",
     "trace:duration", " ", "\\", "µs", "é", "\x00"]
)  # fmt: skip


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(_ATOMS, max_size=14).map(" ".join), st.text(max_size=40)))
def test_parser_fuzz_raises_only_traceql_errors_and_plans_what_it_accepts(text: str) -> None:
    try:
        tree = parse(text)
    except TraceQLError as exc:
        assert 1 <= exc.position <= len(text) + 1
        return
    if tree is not None:
        sql, params = condition(tree, "", lambda key: ("NULL", []))
        assert sql.count("?") == len(params)
