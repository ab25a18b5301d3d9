"""The span search's windows of start time (span_search.py): whatever windows a search counts
or skips, its pages are the matching spans newest first, each once.

Spans lie at ages that fall in every window (seconds, minutes, hours, days); room "old" has only
the spans of more than an hour, so a search of it finds the newest windows empty and reaches
past them. With ``--since`` hours ago, the windows stop there (no day's window)."""

from __future__ import annotations

import time

import pytest
from conftest import make_store
from otlp_factory import trace_request
from test_span_storage import write

from query.library.filters import SpanFilter
from query.library.span_search import SPAN_WINDOWS_NS, search_spans

NOW = time.time_ns()
AGES_S = (2, 30, 100, 600, 5_000, 40_000, 200_000, 2_000_000)  # one batch at each age
SINCE = [None, NOW - 45_000 * 10**9]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("windows") / "w.duckdb")
    store.open()
    for i, age in enumerate(AGES_S):
        room = "old" if age > 3_600 else "lobby"
        write(store, trace_request(16, room=room, start_ns=NOW - age * 10**9, seed=i))
    yield store
    store.close()


def expected(store, name: str, room: str | None, since: int | None) -> list[tuple[str, str]]:
    return store.con.execute(
        "SELECT trace_id, span_id FROM spans WHERE name ILIKE '%' || ? || '%'"
        " AND room = coalesce(?, room) AND epoch_ns(start_time) >= coalesce(?, 0)"
        " ORDER BY start_time DESC, span_id, trace_id",
        [name, room, since],
    ).fetchall()


def keys(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["trace_id"], r["span_id"]) for r in records]


def test_the_ages_fall_in_every_window_and_beyond():
    assert max(AGES_S) * 10**9 > max(SPAN_WINDOWS_NS) > NOW - SINCE[1] > 3_600 * 10**9
    for width in SPAN_WINDOWS_NS:
        assert any(age * 10**9 < width for age in AGES_S)


@pytest.mark.parametrize("since", SINCE)
@pytest.mark.parametrize("room", [None, "old"])
@pytest.mark.parametrize("limit", [1, 3, 7, 16, 40, 200])
def test_a_first_page_is_the_newest_matches(store, limit, room, since):
    want = expected(store, "llm", room, since)
    f = SpanFilter(name="llm", room=room, since=since, limit=limit)
    assert keys(search_spans(store.con, f, 100).records) == want[:limit]


@pytest.mark.parametrize("since", SINCE)
@pytest.mark.parametrize("room", [None, "old"])
def test_pages_of_a_rare_match_are_every_match_once_in_order(store, room, since):
    want = expected(store, "db.query", room, since)
    got, cursor = [], None
    while True:
        f = SpanFilter(name="db.query", room=room, since=since, limit=3, cursor=cursor)
        page = search_spans(store.con, f, 100)
        got += keys(page.records)
        if page.next is None:
            break
        cursor = page.next
    assert got == want and len(want) > 3
