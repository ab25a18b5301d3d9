"""The span search reads disjoint windows of start time, newest first (query.library
.span_search): spans of every age, from the newest seconds to weeks back, come newest first,
in pages that neither repeat nor skip a span, wherever a page starts and ends among the windows,
with ``since``/``until`` and ties of start time on a window's edge.
"""

from __future__ import annotations

import time

import pytest
from conftest import make_reader, make_store
from otlp_factory import trace_request
from test_span_storage import write

from query.library.filters import SpanFilter
from query.library.traces import newest_start, start_bounds

S = 10**9
NEWEST = time.time_ns() // S * S
# Ages of each request's first span: inside each window and on the edges of 10 s, 1 min, 1 h
# and 1 day before the newest span; two requests start together on each edge (ties broken by
# span id).
AGES = (0, 3, 10, 10, 11, 30, 60, 60, 61, 1_200, 3_600, 3_600, 3_601, 18_000, 86_400, 86_400,
        90_000, 3 * 86_400, 40 * 86_400)  # fmt: skip


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory):
    store = make_store(tmp_path_factory.mktemp("windows") / "w.duckdb")
    store.open()
    for i, age in enumerate(AGES):
        room = "a-room" if i % 2 else "b-room"
        # The newest request's last span is the newest span: its 3 spans are 1 ms apart.
        start = NEWEST - age * S - (2 * 10**6 if age == 0 else 0)
        write(store, trace_request(3, room=room, start_ns=start, seed=i))
    yield make_reader(store.cursor())
    store.close()


def expected(reader, **conds) -> list[str]:
    """The matching spans' ids in the search's order, read with plain SQL."""
    where, params = ["true"], []
    if "room" in conds:
        where.append("room = ?")
        params.append(conds["room"])
    if "since" in conds:
        where.append("start_time >= make_timestamp_ns(?)")
        params.append(conds["since"])
    if "until" in conds:
        where.append("start_time <= make_timestamp_ns(?)")
        params.append(conds["until"])
    rows = reader.con.execute(
        f"SELECT span_id FROM spans WHERE {' AND '.join(where)}"
        " ORDER BY start_time DESC, span_id, trace_id",
        params,
    ).fetchall()
    return [r[0] for r in rows]


def paged(reader, limit: int, **conds) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(1_000):
        page = reader.traces(SpanFilter(limit=limit, cursor=cursor, **conds))
        assert len(page["spans"]) <= limit
        ids += [s["span_id"] for s in page["spans"]]
        cursor = page["next"]
        if cursor is None:
            return ids
    raise AssertionError("paging did not end")


CONDS = [
    {},
    {"room": "a-room"},
    {"since": NEWEST - 2 * 86_400 * S},
    {"until": NEWEST - 10 * S},
    {"room": "b-room", "since": NEWEST - 3_600 * S, "until": NEWEST - 60 * S},
    {"room": "no-room"},
]


@pytest.mark.parametrize("conds", CONDS, ids=lambda c: ",".join(c) or "all")
@pytest.mark.parametrize("limit", [1, 2, 5, 6, 7, 1_000])
def test_pages_over_the_windows_are_the_whole_list_in_order(reader, conds, limit) -> None:
    assert paged(reader, limit, **conds) == expected(reader, **conds)


def test_the_data_reaches_every_window(reader) -> None:
    """The store has spans in each window and on each edge the test means to cross."""
    ages = {
        (NEWEST - r[0]) // S
        for r in reader.con.execute("SELECT epoch_ns(start_time) FROM spans").fetchall()
    }
    assert {0, 10, 60, 3_600, 86_400, 40 * 86_400} <= ages
    assert all(len(expected(reader, **conds)) > 6 for conds in CONDS[:4])


def test_the_windows_begin_at_the_newest_start_not_at_the_end_of_a_long_span(tmp_path) -> None:
    """A span that runs for minutes puts its session's ``last_seen_at`` minutes after the
    newest start; the windows still begin at the newest start (from trace_index), so the
    first, shortest ones hold the newest spans."""
    store = make_store(tmp_path / "n.duckdb")
    store.open()
    write(store, trace_request(3, room="r", start_ns=NEWEST - 60 * S, seed=1))
    write(store, trace_request(3, room="r", start_ns=NEWEST, seed=2))
    store.con.execute(
        "INSERT INTO sessions (session_id, room, started_at, last_seen_at)"
        " VALUES ('s', 'r', make_timestamp_ns(?), make_timestamp_ns(?))",
        [NEWEST - 60 * S, NEWEST + 1_200 * S],  # a 20-minute span's end
    )
    con = store.cursor()
    (newest,) = con.execute("SELECT epoch_ns(max(start_time)) FROM spans").fetchone()
    assert newest_start(con) == newest
    assert start_bounds(con) == (newest, NEWEST - 60 * S)
    # Without a trace in the hour before last_seen_at, last_seen_at itself.
    con.execute("DELETE FROM trace_index")
    assert newest_start(con) == NEWEST + 1_200 * S
    store.close()
