"""Agent usage at query time (SPEC 11): the SQL that finds LLM calls, tokens and tool calls.

Nothing is derived at ingest; :func:`usage_sql` reads the telemetry as stored:

* **Spans** carrying the OpenTelemetry GenAI conventions: an LLM call is a span whose
  ``gen_ai.operation.name`` is an inference (``chat``, ``text_completion``,
  ``generate_content``, ``embeddings``), or one with token counts and no operation name; its
  tokens are ``gen_ai.usage.input_tokens`` / ``output_tokens`` (and
  ``gen_ai.usage.cache_read.input_tokens``, a part of the input), strings or numbers alike. A
  tool call is an ``execute_tool`` span (``gen_ai.tool.name``) or a MeshAgent tool span
  (``execute.<toolkit>.<tool>`` with ``toolkit`` and ``tool``). Only spans whose attribute keyset
  holds one of those keys are read, each value at its keyset position (query.library.search).
* **MeshAgent's LLM spans** (meshagent-openai's ``responses_adapter.py``, ``create_response``):
  a ``llm.turn`` (one agent turn) holds a loop of ``llm.turn.iteration`` spans (``model``,
  ``provider``: the request being prepared) each followed by its sibling ``llm.invoke`` span
  (no attributes: the request itself, retries included, and the handling of its response).
  One ``llm.invoke`` is one LLM call, its model and provider those of the iteration just
  before it under the same ``llm.turn``; the turn and the iterations are not calls. These
  spans carry no token counts: MeshAgent's tokens come from its ``meshagent.usage`` counters.
* **Metric points**: MeshAgent's ``meshagent.usage`` counters (DELTA, one per token kind, with
  ``model`` and ``provider``), the GenAI metrics ``gen_ai.client.token.usage`` (by
  ``gen_ai.token.type``) and ``gen_ai.client.operation.duration`` (its count: calls).
  Cumulative series are turned into deltas per series first.

In each session, a service's tokens come from its spans when any of its LLM-call spans there
carry token counts, else from its token metrics; its calls from its spans, else from the
duration metric: never both (the same answer whatever the grouping or filter). The
``session_id`` *attribute* of MeshAgent's ``llm.turn`` spans (an agent context id) is never
read: a span's session is its ``session_id`` column.
"""

from __future__ import annotations

from typing import Any

import duckdb

from collector.store.reads import SPAN_ROWS

from .search import attribute_key_maps, span_value_or_null

OP, PROVIDER, SYSTEM = "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system"
REQUEST_MODEL, RESPONSE_MODEL = "gen_ai.request.model", "gen_ai.response.model"
INPUT, OUTPUT = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"
CACHED = "gen_ai.usage.cache_read.input_tokens"
TOOL_NAME, TOOLKIT, TOOL = "gen_ai.tool.name", "toolkit", "tool"
MESH_MODEL, MESH_PROVIDER = "model", "provider"  # on MeshAgent's llm.turn.iteration spans
MESH_ITERATION, MESH_INVOKE = "llm.turn.iteration", "llm.invoke"
SPAN_KEYS = (OP, PROVIDER, SYSTEM, REQUEST_MODEL, RESPONSE_MODEL, INPUT, OUTPUT, CACHED,
             TOOL_NAME, TOOLKIT, TOOL, MESH_MODEL, MESH_PROVIDER)  # fmt: skip
INFERENCE = ("chat", "text_completion", "generate_content", "embeddings")

MESHAGENT_SCOPE = "meshagent.usage"
# MeshAgent's token counters (meshagent-openai and meshagent-anthropic, usage.py): the input is
# uncached + cached + cache writes, per modality; Anthropic's long-context tier adds "_long".
MESH_CACHED = ("cached_tokens", "audio_cached_tokens", "image_cached_tokens",
               "cache_read_input_tokens", "cache_read_input_tokens_long")  # fmt: skip
MESH_INPUT = (
    *MESH_CACHED, "input_tokens", "cache_write_tokens", "audio_input_tokens", "image_input_tokens",
    "cache_creation_input_tokens", "input_tokens_long", "cache_creation_input_tokens_long",
)  # fmt: skip
MESH_OUTPUT = ("output_tokens", "audio_output_tokens", "image_output_tokens",
               "output_tokens_long")  # fmt: skip
TOKEN_METRIC, DURATION_METRIC = "gen_ai.client.token.usage", "gen_ai.client.operation.duration"

# What a usage row is grouped by: --by name → SQL over the items' columns ({p}: alias and dot).
KEYS = {
    "model": "{p}model",
    "provider": "{p}provider",
    "room": "{p}room",
    "session": "{p}session_id",
    "service": "{p}service_name",
    "tool": "{p}tool_name",
    "hour": "strftime(date_trunc('hour', {p}time), '%Y-%m-%dT%H:00:00Z')",  # usage over time
}


def _list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _num(sql: str) -> str:
    return f"TRY_CAST(trim({sql}) AS DOUBLE)"


def span_items(
    con: duckdb.DuckDBPyConnection, where: list[str], params: list[Any]
) -> tuple[str, list[Any]]:
    """SELECT of the usage spans (LLM and tool calls) meeting ``where`` on span_rows."""
    places = attribute_key_maps(con, list(SPAN_KEYS))
    assert places is not None

    def keysets(key: str) -> set[int]:
        return {ks for ks, _ in places[key].keysets or ()}

    wanted = keysets(OP) | keysets(INPUT) | keysets(OUTPUT) | keysets(TOOL_NAME)
    wanted |= keysets(TOOLKIT) & keysets(TOOL)
    bound: list[Any] = []  # the parameters, in the order the f-strings below place them

    def v(key: str) -> str:
        sql, p = span_value_or_null(key, "", places[key])
        bound.extend(p)
        return sql

    def filters() -> str:
        bound.extend(params)
        return "".join(f" AND {c}" for c in where)

    def ids(keys: set[int]) -> str:
        return ", ".join(str(int(k)) for k in sorted(keys)) or "NULL"

    select = f"""
        SELECT project, room, session_id, service_name, start_time AS time, duration_ns,
               status_code, name, {v(OP)} AS op,
               coalesce({v(PROVIDER)}, {v(SYSTEM)}) AS provider,
               coalesce({v(RESPONSE_MODEL)}, {v(REQUEST_MODEL)}) AS model,
               {_num(v(INPUT))} AS input, {_num(v(OUTPUT))} AS output,
               {_num(v(CACHED))} AS cached, {v(TOOL_NAME)} AS gen_ai_tool,
               CASE WHEN starts_with(name, 'execute.') AND {v(TOOLKIT)} IS NOT NULL
                         AND {v(TOOL)} IS NOT NULL
                    THEN {v(TOOLKIT)} || '.' || {v(TOOL)} END AS mesh_tool,
               false AS mesh_call
        FROM {SPAN_ROWS}
        WHERE attribute_keyset IN ({ids(wanted)}){filters()}"""
    # MeshAgent's llm.invoke spans (those not read above), each with the model and provider
    # of the llm.turn.iteration just before it under the same parent (its llm.turn). The
    # adapter makes an iteration before every invoke: without a keyset holding both of their
    # keys, the store holds none of its calls, and the spans' names are not read at all.
    iterations = keysets(MESH_MODEL) & keysets(MESH_PROVIDER)
    not_read = f" AND attribute_keyset NOT IN ({ids(wanted)})" if wanted else ""
    if iterations:
        select += f"""
        UNION ALL
        SELECT c.project, c.room, c.session_id, c.service_name, c.start_time, c.duration_ns,
               c.status_code, c.name, NULL, i.provider, i.model, NULL, NULL, NULL, NULL, NULL,
               true
        FROM (SELECT * FROM {SPAN_ROWS} WHERE name = '{MESH_INVOKE}'{not_read}{filters()}) c
        ASOF LEFT JOIN (
            SELECT trace_id, parent_span_id, start_time, {v(MESH_MODEL)} AS model,
                   {v(MESH_PROVIDER)} AS provider
            FROM {SPAN_ROWS}
            WHERE name = '{MESH_ITERATION}'
              AND attribute_keyset IN ({ids(iterations)})
              {filters()}) i
        ON i.trace_id = c.trace_id AND i.parent_span_id = c.parent_span_id
           AND i.start_time <= c.start_time"""
    classify = f"""
        SELECT *, CASE
            WHEN op = 'execute_tool' OR (op IS NULL AND mesh_tool IS NOT NULL) THEN 'tool'
            WHEN op IN {_list(INFERENCE)} OR mesh_call
                 OR (op IS NULL AND (input IS NOT NULL OR output IS NOT NULL)) THEN 'llm'
            END AS kind,
            CASE WHEN op = 'execute_tool' OR (op IS NULL AND mesh_tool IS NOT NULL)
                 THEN coalesce(gen_ai_tool, mesh_tool, regexp_replace(name, '^execute_tool ?', ''))
            END AS tool_name
        FROM ({select})"""
    return classify, bound


def metric_items(
    where: list[str], params: list[Any], time_where: list[str], time_params: list[Any]
) -> tuple[str, list[Any]]:
    """SELECT of the token and call amounts of metric points: one row per point with its
    ``input``, ``cached``, ``output`` and ``calls`` (cumulative series as deltas).

    ``where`` selects series (project, room, session); ``time_where`` the points' times, applied
    after the deltas (a cumulative point's delta needs the point before the window)."""
    mesh = _list(MESH_INPUT + MESH_OUTPUT)
    raw = f"""
        SELECT project, room, session_id, service_name, time, name, temporality, start_time,
               coalesce(attributes['model'], attributes['{RESPONSE_MODEL}'],
                        attributes['{REQUEST_MODEL}']) AS model,
               coalesce(attributes['provider'], attributes['{PROVIDER}'],
                        attributes['{SYSTEM}']) AS provider,
               attributes['gen_ai.token.type'] AS token_type,
               CASE WHEN name = '{DURATION_METRIC}' THEN count::DOUBLE
                    WHEN type = 'histogram' THEN sum ELSE value END AS v,
               CAST(attributes AS VARCHAR) || CAST(resource_attributes AS VARCHAR) AS series
        FROM metric_points
        WHERE (name IN ('{TOKEN_METRIC}', '{DURATION_METRIC}')
               OR (scope_name = '{MESHAGENT_SCOPE}' AND name IN {mesh}))"""
    raw += "".join(f" AND {c}" for c in where)
    delta = """
        SELECT *, CASE WHEN temporality = 'cumulative' THEN
                     CASE WHEN v >= prev THEN v - prev ELSE v END ELSE v END AS amount
        FROM (SELECT *, lag(v) OVER (PARTITION BY service_name, name, series, start_time
                                     ORDER BY time) AS prev FROM raw)"""
    amounts = f"""
        SELECT project, room, session_id, service_name, time, model, provider,
               CASE WHEN name = '{DURATION_METRIC}' THEN amount ELSE 0 END AS calls,
               CASE WHEN name = '{TOKEN_METRIC}' AND token_type = 'input' THEN amount
                    WHEN name IN {_list(MESH_INPUT)} THEN amount ELSE 0 END AS input,
               CASE WHEN name IN {_list(MESH_CACHED)} THEN amount ELSE 0 END AS cached,
               CASE WHEN name = '{TOKEN_METRIC}' AND token_type = 'output' THEN amount
                    WHEN name IN {_list(MESH_OUTPUT)} THEN amount ELSE 0 END AS output
        FROM delta WHERE amount IS NOT NULL"""
    amounts += "".join(f" AND {c}" for c in time_where)
    # The GenAI token metric's "input"/"output" names are not MeshAgent's counters: a point of
    # gen_ai.client.token.usage is never matched by the IN lists above (its name differs).
    sql = f"WITH raw AS ({raw}), delta AS ({delta}) {amounts}"
    return sql, [*params, *time_params]


def usage_sql(
    con: duckdb.DuckDBPyConnection,
    by: str,
    span_where: tuple[list[str], list[Any]],
    series_where: tuple[list[str], list[Any]],
    time_where: tuple[list[str], list[Any]],
) -> tuple[str, list[Any]]:
    """One statement giving, per ``by`` key, LLM calls and tokens per model (``part`` 'llm')
    and tool calls with latency quantiles (``part`` 'tool'); the rows with ``total`` true
    are the same over all keys."""
    spans, sp = span_items(con, *span_where)
    metrics, mp = metric_items(*series_where, *time_where)
    key = KEYS[by].format(p="")
    metric_key = "NULL" if by == "tool" else KEYS[by].format(p="m.")
    sql = f"""
        WITH s AS MATERIALIZED ({spans}),
        m AS ({metrics}),
        own AS (
            SELECT project, service_name, session_id,
                   bool_or(input IS NOT NULL OR output IS NOT NULL) AS tokens
            FROM s WHERE kind = 'llm' GROUP BY ALL),
        llm AS (
            SELECT {key} AS key, model, 1 AS calls, coalesce(input, 0) AS input,
                   coalesce(cached, 0) AS cached, coalesce(output, 0) AS output
            FROM s WHERE kind = 'llm'
            UNION ALL
            SELECT {metric_key} AS key, model,
                   CASE WHEN own.project IS NULL THEN m.calls ELSE 0 END,
                   CASE WHEN own.tokens IS NOT TRUE THEN m.input ELSE 0 END,
                   CASE WHEN own.tokens IS NOT TRUE THEN m.cached ELSE 0 END,
                   CASE WHEN own.tokens IS NOT TRUE THEN m.output ELSE 0 END
            FROM m LEFT JOIN own ON own.project IS NOT DISTINCT FROM m.project
                 AND own.service_name IS NOT DISTINCT FROM m.service_name
                 AND own.session_id IS NOT DISTINCT FROM m.session_id)
        SELECT 'llm' AS part, grouping(key) = 1 AS total, key, model, sum(calls) AS calls,
               sum(input) AS input, sum(cached) AS cached, sum(output) AS output,
               NULL::BIGINT AS errors, NULL::DOUBLE AS p50, NULL::DOUBLE AS p95
        FROM llm GROUP BY GROUPING SETS ((key, model), (model))
        HAVING sum(calls) > 0 OR sum(input) > 0 OR sum(output) > 0
        UNION ALL
        SELECT 'tool', grouping(tool_key) = 1, tool_key, NULL, count(*), NULL, NULL, NULL,
               count(*) FILTER (WHERE status_code = 'ERROR'),
               quantile_cont(duration_ns, 0.5) / 1e6, quantile_cont(duration_ns, 0.95) / 1e6
        FROM (SELECT *, {key} AS tool_key FROM s WHERE kind = 'tool')
        GROUP BY GROUPING SETS ((tool_key), ())"""
    return sql, [*sp, *mp]
