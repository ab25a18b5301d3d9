"""The span schema by name: both flatteners and the record readers follow its one definition.

A column added to (or removed from) ``TABLES["span_data"]`` in collector/store/schema.py that
a flattener does not make fails with a SchemaMismatch naming it, and never lands in the wrong
place: tables are assembled by name, not by the order the columns were made in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import make_tagger
from otlp_factory import trace_request

from collector import fast_spans
from collector import flatten_spans as python_flattener
from collector.columns import by_name, table_by_name
from collector.decode import parse_protobuf
from collector.errors import SchemaMismatch
from collector.store import schema
from query.library import records

RECEIVED = 1_700_000_000_000_000_000
TAGGER = make_tagger()
SPAN_DATA = [name for name, _ in schema.TABLES["span_data"]]
needs_c = pytest.mark.skipif(not fast_spans.AVAILABLE, reason="C extension not built")


def request_body() -> bytes:
    req = trace_request(16, session="s-1")
    span = req.resource_spans[0].scope_spans[0].spans[3]
    span.events.add(time_unix_nano=span.start_time_unix_nano, name="retry")
    span.links.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), flags=1)
    return req.SerializeToString()


def python_table(body: bytes) -> pa.Table:
    req = parse_protobuf("traces", body)
    return python_flattener.flatten_spans(req, TAGGER, RECEIVED).table


def with_column(monkeypatch: pytest.MonkeyPatch, name: str, sql_type: str) -> pa.Schema:
    """The spans' Arrow schema once ``name`` is added to TABLES["span_data"]."""
    monkeypatch.setitem(schema.TABLES, "span_data", [*schema.TABLES["span_data"], (name, sql_type)])
    return schema.arrow_schema("span_data")


def test_python_flattener_makes_the_schemas_columns() -> None:
    table = python_table(request_body())
    assert table.column_names == SPAN_DATA
    assert table.schema == schema.ARROW_SCHEMAS["spans"]
    assert table.num_rows == 16


@needs_c
def test_c_decoder_makes_the_schemas_columns() -> None:
    body = request_body()
    table = fast_spans.flatten_spans_bytes(body, TAGGER, RECEIVED).table
    assert table.column_names == SPAN_DATA
    assert table.equals(python_table(body))


def test_python_flattener_fails_on_a_column_it_does_not_make(monkeypatch) -> None:
    monkeypatch.setattr(python_flattener, "SCHEMA", with_column(monkeypatch, "cost", "DOUBLE"))
    with pytest.raises(SchemaMismatch, match=r"not made: \['cost'\]"):
        python_table(request_body())


@needs_c
def test_c_decoder_fails_on_a_column_it_does_not_make(monkeypatch) -> None:
    extended = with_column(monkeypatch, "cost", "DOUBLE")
    # at import: the C decoder's buffers against the schema
    with pytest.raises(SchemaMismatch, match=r"missing \['cost'\]"):
        fast_spans.plan(fast_spans._otlpfast.COLUMNS, extended)
    # and per batch, the table assembled by name
    monkeypatch.setattr(fast_spans, "SCHEMA", extended)
    with pytest.raises(SchemaMismatch, match=r"not made: \['cost'\]"):
        fast_spans.flatten_spans_bytes(request_body(), TAGGER, RECEIVED)


@needs_c
def test_c_decoder_buffers_match_the_schema_exactly() -> None:
    c_columns = dict(fast_spans._otlpfast.COLUMNS)
    per_span, per_context, structs = fast_spans.plan(c_columns)
    made = {name for name, _, _ in per_span + per_context} | fast_spans.MADE_IN_PYTHON
    assert made == set(SPAN_DATA)
    assert [f for f, _, _ in structs["links"]] == [
        f.name for f in schema.ARROW_SCHEMAS["spans"].field("links").type.value_type
    ]
    for broken, problem in [
        ({k: v for k, v in c_columns.items() if k != "links.flags"}, r"missing \['links.flags'\]"),
        ({**c_columns, "end_time": "fixed"}, r"not in the schema \['end_time'\]"),
        ({**c_columns, "flags": "string"}, r"another structure \['flags'\]"),
        ({**c_columns, "ctx.room": "string"}, r"not in the schema \['ctx.room'\]"),
    ]:
        with pytest.raises(SchemaMismatch, match=problem):
            fast_spans.plan(broken)


def test_columns_are_placed_by_name_not_by_the_order_made() -> None:
    table = python_table(request_body())
    shuffled = {name: table[name] for name in reversed(table.column_names)}
    assert table_by_name(shuffled, table.schema, "test").equals(table)
    with pytest.raises(SchemaMismatch, match=r"not made: \['b'\]; .* has not: \['c'\]"):
        by_name({"a": 1, "c": 3}, ["a", "b"], "test")


def test_readers_return_the_definitions_columns_by_name() -> None:
    for table, hidden in records.NOT_RETURNED.items():
        assert hidden <= {c for c, _ in records.DEFINITIONS[table]}, table
    spans = records.COLUMNS["spans"]
    assert spans == [c for c, _ in schema.V1_SPANS if c not in records.NOT_RETURNED["spans"]]
    assert {"trace_id", "span_id", "attributes", "events", "links"} <= set(spans)


@needs_c
def test_c_decoder_header_states_the_rule() -> None:
    source = Path(fast_spans.__file__).with_name("_otlpfast.c").read_text()
    header = source[: source.index("*/")]
    assert "THE RULE: columns by name" in header
    words = set(re.findall(r"[\w.]+", header))
    for name in fast_spans._otlpfast.COLUMNS:
        assert name.rsplit(".", 1)[-1] in words or name in words, name
