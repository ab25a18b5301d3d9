"""The pages of a session's spans through --server print the same bytes as the --db stream where
a page's start is hard to find without reading the whole session: a trace that started on an
earlier page and still runs, a trace that begins in another session, a trace that runs on past a
gap of several pages' time, a filter that matches a trace only by its last span."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from test_paging import SEC, Sender
from test_query_fixtures import World
from test_session_stream import (  # small_batches: its fixture
    same_through_server_and_db,
    small_batches,  # noqa: F401
    wait_for_spans,
)

LATE = 0x1A7E1A7E1A7E1A7E1A7E1A7E1A7E1A7E  # starts on the first page, runs past the gap
SHARED = 0x5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A  # begins in session other-1, goes on in busy-1
SPANS = 40 * 3 + 12 + 3 + 40 * 3


def _span(sender: Sender, trace_id: int, name: str, start: int, end: int) -> None:
    parent = SpanContext(trace_id, random.getrandbits(64), True, TraceFlags(1))
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    span = sender.tracer.start_span(name, context=ctx, attributes=sender.tags, start_time=start)
    span.end(end_time=end)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Session busy-1: 40 traces of 3 spans 1 ms apart; trace LATE from the 11th ms to after
    a gap of 8 s, its last span named "op" as every other trace's root; SHARED's 3 spans in
    busy-1 after the gap (its first span in session other-1, a second earlier); 40 more traces
    of 3 spans after the gap.
    """
    w = World(tmp_path_factory.mktemp("session-seek") / "roomscope.duckdb")
    try:
        sender = Sender(w.http_url)
        start = time.time_ns() - 600 * SEC
        for i in range(40):
            sender.trace(start + i * 1_000_000)
        for k in range(12):
            at = start + 10_500_000 + k * 800_000_000
            _span(sender, LATE, "op" if k == 11 else "late", at, at + 1000)
        after = start + 8 * SEC
        for i in range(40):
            sender.trace(after + i * 1_000_000)
        for k in range(3):
            _span(sender, SHARED, "shared", after + 20_500_000 + k, after + 30_000_000)
        sender.tags = {"room": "busy", "session": "other-1"}
        _span(sender, SHARED, "shared", after - SEC, after - SEC + 1000)
        sender.tp.shutdown()
        wait_for_spans(w.api_url, "busy-1", SPANS)
        wait_for_spans(w.api_url, "other-1", 1)
        yield w
    finally:
        w.stop()


CASES = [
    ["-o", "jsonl"],
    ["-o", "csv"],
    ["-o", "jsonl", "--name", "op"],
    ["-o", "jsonl", "--name", "shared"],
    ["-o", "jsonl", "--name", "op", "--limit", "150"],
]


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_the_pages_through_server_print_the_stream_through_db(
    world: World, args: list[str]
) -> None:
    out = same_through_server_and_db(world, ["session", "traces", "busy-1", *args])
    if args == ["-o", "jsonl"]:
        assert len(out.splitlines()) == SPANS
        assert out.count(f"{SHARED:032x}") == 3  # not its span of other-1
    if args == ["-o", "jsonl", "--name", "op"]:  # LATE matched by its last span, past the gap
        assert out.count(f"{LATE:032x}") == 12
