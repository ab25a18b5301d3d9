"""Log records sorted with their spans' ranges: a move and each merge piece rewrite the range's
log records in place in ``log_data``, by room, project, session and time (archive_merge.
sort_logs), every record kept once; a session's reads of its logs then add its room.
"""

from __future__ import annotations

import time

from conftest import make_reader, make_store, make_tagger, wait_for_job
from otlp_factory import trace_request
from test_compaction import post
from test_sessions import log_request
from test_span_storage import write

from collector.decode import decode_body
from collector.store import DuckDBStore
from collector.store.maintenance.archive_merge import LOG_SORT_KEY
from collector.store.maintenance.compaction import compact_all, merge_all
from query.library.filters import LogFilter
from query.library.sessions import session_window

HOUR = 3_600 * 10**9
SECOND = 10**9
BASE = (time.time_ns() - 30 * HOUR) // HOUR * HOUR  # an hour boundary, 30 h ago
ROOMS = ("c-room", "a-room", "b-room")
PER = 40  # spans per room and hour
LOGS = 5  # log records per room and hour


def write_logs(store: DuckDBStore, room: str, session: str, times: list[int]) -> None:
    req = log_request(times, room=room, session=session)
    d = decode_body("logs", req.SerializeToString(), "protobuf", make_tagger())
    store.append({**{k: [t] for k, t in d.side.items()}, "logs": [d.table]})


def filled_store(tmp_path, hours: int = 6) -> DuckDBStore:
    """Each hour, each room sends PER spans and LOGS log records of its session of the hour,
    rooms interleaved in time (as they arrive)."""
    store = make_store(tmp_path / "c.duckdb")
    store.open()
    for h in range(hours):
        for j, room in enumerate(ROOMS):
            start = BASE + h * HOUR + j * 10**6
            write(store, trace_request(PER, room=room, start_ns=start, seed=h * 10 + j))
        for i in range(LOGS):
            for j, room in enumerate(ROOMS):
                t = BASE + h * HOUR + i * 10**8 + j
                write_logs(store, room, f"{room}-{h}", [t])
    return store


def all_logs(con) -> list[tuple]:
    return con.execute("SELECT * FROM logs ORDER BY time, room").fetchall()


def stored_order(con) -> list[tuple]:
    """Each log record's sort key and time in ns, in storage order."""
    return con.execute(
        f"SELECT {LOG_SORT_KEY}, epoch_ns(time) FROM log_data ORDER BY rowid"
    ).fetchall()


def test_moves_and_merges_sort_each_ranges_log_records_by_room_keeping_each_once(tmp_path):
    store = filled_store(tmp_path)
    con = store.con
    before = all_logs(con)
    assert len(before) == 6 * LOGS * len(ROOMS)
    assert stored_order(con) != sorted(stored_order(con))  # rooms interleaved as sent
    compact_all(store, 2 * PER * len(ROOMS), 0, now_ns=BASE + 6 * HOUR)
    assert all_logs(con) == before
    cuts = [BASE, *(BASE + (2 * i + 1) * HOUR + SECOND for i in range(3))]
    rows = stored_order(con)
    for i in range(3):
        part = [r for r in rows if cuts[i] <= r[-1] < cuts[i + 1]]
        assert len(part) == 2 * LOGS * len(ROOMS) and part == sorted(part)
        assert [r[0] for r in part[:: 2 * LOGS]] == sorted(ROOMS)
    # A late record for a sorted range stays where it lands, until a merge covers the range.
    write_logs(store, "a-room", "a-room-0", [BASE + 10])
    assert stored_order(con)[-1][0] == "a-room"
    assert merge_all(store, fanin=3, levels=1, rows=10**6) == 6 * PER * len(ROOMS)
    after = all_logs(con)
    assert len(after) == len(before) + 1 and all(r in after for r in before)
    rows = stored_order(con)
    assert len(rows) == len(before) + 1 and rows == sorted(rows)
    store.close()


def test_a_sessions_log_reads_add_its_room_once_its_records_are_sorted(start_collector):
    settings = {"compaction.rows": 100, "compaction.after": "1h", "compaction.interval": 0.05}
    rc = start_collector(**settings)
    for h in range(3):
        for j, room in enumerate(ROOMS):
            start = BASE + h * HOUR + j
            post(rc, trace_request(PER, room=room, session=room, start_ns=start, seed=h * 10 + j))
            times = [start + i * 10**8 for i in range(LOGS)]
            post(rc, log_request(times, room=room, session=room, severity=17), "logs")
    # One record of b-room's session was sent from another room: its reads may not add one.
    post(rc, log_request([BASE + 5], room="c-room", session="b-room", severity=17), "logs")
    wait_for_job(rc.job("compaction"), lambda stats: stats["spans"] >= 3 * PER * len(ROOMS))
    con = rc.collector.store.cursor()
    try:
        reader = make_reader(con)
        window, _ = session_window(con, "a-room", "logs")
        assert "BETWEEN" in window and "room = ?" in window
        window, _ = session_window(con, "b-room", "logs")
        assert "BETWEEN" in window and "room = ?" not in window
        for room, n in (("a-room", 3 * LOGS), ("b-room", 3 * LOGS + 1)):
            logs = reader.session_logs(room, LogFilter(severity=17, limit=1000))["logs"]
            assert len(logs) == n
            events = reader.session_events(room)["events"]
            assert sum(e["type"] == "log" for e in events) == n
    finally:
        con.close()
