"""Paging (SPEC 8) of the lists whose order ingest can change while they are read: the session
list (a late, older record moves a session's start), the room list, trace rows (a newer match
moves a trace): no record repeated or skipped across pages. Records are sent with the real
OpenTelemetry SDK exporters (test_paging.Sender) to a collector on free ports, and read through
the API.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from typing import Any

import duckdb
import pytest
from conftest import BACKENDS, DEFAULTS, make_reader
from test_paging import SEC, Sender, get

from collector.store.reads import open_reader
from query.library.filters import SessionFilter
from query.library.reader import Reader

# --- session and room lists under concurrent ingest ------------------------------------------


def _paged(base: str, path: str, key: str, limit: int) -> list[dict]:
    """Every record of a list, page by page of ``limit``, pausing so that ingest commits between
    pages."""
    records: list[dict] = []
    cursor = None
    while True:
        body = get(base, path, limit=limit, **({"cursor": cursor} if cursor else {})).json()
        records.extend(body[key])
        cursor = body["next"]
        if cursor is None:
            return records
        time.sleep(0.02)


def _sessions_world(start_collector: Any) -> tuple[Any, Sender, int]:
    """A collector holding 30 explicit sessions in 6 rooms, one trace each, 10 s apart."""
    c = start_collector()
    sender = Sender(c.http_url)
    base = time.time_ns() - 900 * SEC
    for i in range(30):
        sender.tags = {"room": f"room-{i % 6}", "session": f"s-{i:02d}"}
        sender.trace(base + i * 10 * SEC)
    sender.flush()
    deadline = time.monotonic() + 30
    while len(get(c.api_url, "/sessions", limit=1000).json()["sessions"]) < 30:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return c, sender, base


def _ingest_while(sender: Sender, step: Any) -> tuple[threading.Event, threading.Thread, dict]:
    stop = threading.Event()
    sent = {"n": 0}

    def ingest() -> None:
        rng = random.Random(11)
        while not stop.is_set():
            step(rng, sent["n"])
            sender.flush()
            sent["n"] += 1

    thread = threading.Thread(target=ingest, daemon=True)
    thread.start()
    return stop, thread, sent


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_session_and_room_lists_neither_repeat_nor_skip_while_ingest_goes_on(
    start_collector: Any,
) -> None:
    """New sessions (newer and older than the listed ones, in new and known rooms) and newer
    records of listed sessions arrive while the session list and the room list are paged."""
    c, sender, base = _sessions_world(start_collector)
    existing = {s["session_id"] for s in get(c.api_url, "/sessions", limit=1000).json()["sessions"]}
    rooms = {
        (r["room"], r["project"]) for r in get(c.api_url, "/rooms", limit=1000).json()["rooms"]
    }

    def step(rng: random.Random, n: int) -> None:
        sender.tags = {"room": f"room-{rng.randrange(12)}", "session": f"new-{n}"}
        sender.trace(base + rng.randrange(-300, 600) * SEC)  # a new session, any time
        sender.tags = {"room": f"room-{n % 6}", "session": f"s-{rng.randrange(30):02d}"}
        sender.trace(base + 400 * SEC + n * SEC)  # a listed session goes on

    stop, thread, sent = _ingest_while(sender, step)
    try:
        sessions = _paged(c.api_url, "/sessions", "sessions", 4)
        listed_rooms = _paged(c.api_url, "/rooms", "rooms", 2)
    finally:
        stop.set()
        thread.join(timeout=60)
        sender.shutdown()
    assert sent["n"] >= 3  # ingest did go on while the pages were read
    ids = [s["session_id"] for s in sessions]
    assert len(ids) == len(set(ids)), "a session repeated"
    assert not existing - set(ids), "sessions skipped"
    keys = [(r["room"], r["project"]) for r in listed_rooms]
    assert len(keys) == len(set(keys)), "a room repeated"
    assert not rooms - set(keys), "rooms skipped"
    assert len(get(c.api_url, "/sessions", limit=1000).json()["sessions"]) > len(existing)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_listed_session_that_gains_an_older_record_is_not_listed_again(
    start_collector: Any,
) -> None:
    """A late record older than a session's start moves its started_at back (SPEC 3), which
    is the session list's order: a session already on a page must not come again later."""
    c, sender, base = _sessions_world(start_collector)
    existing = [s["session_id"] for s in get(c.api_url, "/sessions", limit=1000).json()["sessions"]]

    def step(rng: random.Random, n: int) -> None:
        i = rng.randrange(30)
        sender.tags = {"room": f"room-{i % 6}", "session": f"s-{i:02d}"}
        sender.trace(base - (n + 1) * 20 * SEC)  # older than every session's start so far

    stop, thread, sent = _ingest_while(sender, step)
    try:
        sessions = _paged(c.api_url, "/sessions", "sessions", 3)
    finally:
        stop.set()
        thread.join(timeout=60)
        sender.shutdown()
    assert sent["n"] >= 3
    ids = [s["session_id"] for s in sessions]
    assert len(ids) == len(set(ids)), "a session repeated"
    assert not set(existing) - set(ids), "sessions skipped"


# --- the pages of one listing hold the sessions as of its first page -------------------------


def _wait(c: Any, check: Any) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _started(c: Any, sid: str) -> int | None:
    answer = get(c.api_url, f"/sessions/{sid}")
    if answer.status_code == 404:
        return None
    return answer.json()["session"]["started_at"]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_later_pages_place_sessions_as_of_the_first_page(start_collector: Any) -> None:
    """Between two pages: a listed session gains a record older than every session, a session
    not listed yet gains an older record, and a new session starts amid the listed ones. The
    later pages list neither the first again nor the new one, list the second once in its old
    place, and show its true (new) start; a new listing shows every change."""
    c, sender, base = _sessions_world(start_collector)
    first = get(c.api_url, "/sessions", limit=5).json()
    listed = [s["session_id"] for s in first["sessions"]]
    assert listed == [f"s-{i:02d}" for i in range(29, 24, -1)]
    before = {sid: _started(c, sid) for sid in ("s-27", "s-12")}
    for sid, start in (("s-27", base - 100 * SEC), ("s-12", base - 200 * SEC)):
        sender.tags = {"room": f"room-{int(sid[2:]) % 6}", "session": sid}
        sender.trace(start)
    sender.tags = {"room": "room-1", "session": "late-new"}
    sender.trace(base + 125 * SEC)
    sender.flush()
    _wait(c, lambda: _started(c, "late-new") is not None)
    _wait(c, lambda: all(_started(c, sid) != before[sid] for sid in before))

    rest = _paged_from(c.api_url, first["next"], 5)
    ids = [s["session_id"] for s in rest]
    assert listed + ids == [f"s-{i:02d}" for i in range(29, -1, -1)]  # the first page's order
    s12 = next(s for s in rest if s["session_id"] == "s-12")
    assert s12["started_at"] == _started(c, "s-12") < before["s-12"]  # its true start
    again = [s["session_id"] for s in get(c.api_url, "/sessions", limit=100).json()["sessions"]]
    assert again[-2:] == ["s-27", "s-12"] and "late-new" in again
    sender.shutdown()


def _paged_from(base: str, cursor: str | None, limit: int) -> list[dict]:
    records: list[dict] = []
    while cursor is not None:
        body = get(base, "/sessions", limit=limit, cursor=cursor).json()
        records.extend(body["sessions"])
        cursor = body["next"]
    return records


def test_a_cursor_with_a_bad_as_of_point_is_refused(start_collector: Any) -> None:
    c, sender, _ = _sessions_world(start_collector)
    sender.shutdown()
    cursor = get(c.api_url, "/sessions", limit=2).json()["next"]
    body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for bad in ("soon", 1.5, True, None):
        edited = dict(body, x={"h": bad})
        raw = json.dumps(edited, separators=(",", ":")).encode()
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        answer = get(c.api_url, "/sessions", limit=2, cursor=text)
        if bad is None:  # no as-of point (a cursor of an older roomscope): the next page still
            assert answer.status_code == 200, answer.text
        else:
            assert answer.status_code == 400, answer.text
            assert answer.json() == {"error": "invalid cursor"}


def _reader_pages(reader: Reader, limit: int, **filters: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        body = reader.sessions(SessionFilter(limit=limit, cursor=cursor, **filters))
        ids.extend(s["session_id"] for s in body["sessions"])
        cursor = body["next"]
        if cursor is None:
            return ids


def test_sessions_are_placed_by_their_records_while_their_rows_trail(start_collector: Any) -> None:
    """Under load the tracker writes a session row's changes up to a second after the records
    (its session.started event moves with them): a listing places each session by the event,
    so rows that trail (here: started later than their events) list no session twice or never,
    on pages of any size, filtered or not."""
    c, sender, _ = _sessions_world(start_collector)
    sender.shutdown()
    c.stop()
    con = duckdb.connect(str(c.db))
    for sid, later in (("s-03", 250), ("s-05", 245), ("s-11", 35), ("s-20", 1), ("s-21", 3)):
        con.execute(
            "UPDATE sessions SET started_at = started_at + to_seconds(?) WHERE session_id = ?",
            [later, sid],
        )
    con.close()
    reader = make_reader(open_reader(str(c.db), DEFAULTS.get("store.memory_limit")))
    newest_first = [f"s-{i:02d}" for i in range(29, -1, -1)]
    for limit in (1, 2, 3, 4, 7, 30):
        assert _reader_pages(reader, limit) == newest_first, limit
    in_room = [sid for sid in newest_first if int(sid[2:]) % 6 == 3]
    for limit in (1, 2, 5):
        assert _reader_pages(reader, limit, room="room-3") == in_room, limit


# --- trace rows (the console's search): a trace's newest match moves when spans arrive -------


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_trace_rows_hold_the_spans_of_the_first_page(start_collector: Any) -> None:
    """Trace rows page newest match first. Between two pages a trace not listed yet gains a
    span newer than every match, and a new trace starts amid the listed ones: the later pages
    list the first once, in its old place, and not the new one; a new listing shows both."""
    c = start_collector()
    sender = Sender(c.http_url)
    base = time.time_ns() - 900 * SEC
    ids = [0x7A0 + i for i in range(10)]
    for i, tid in enumerate(ids):
        sender.trace(base + i * 10 * SEC, trace_id=tid)
    sender.flush()
    names = [f"{tid:032x}" for tid in reversed(ids)]  # newest first

    def rows(**params: Any) -> dict:
        return get(c.api_url, "/trace_rows", room="busy", **params).json()

    _wait(c, lambda: len(rows(limit=100)["traces"]) == 10)
    first = rows(limit=3)
    assert [t["trace_id"] for t in first["traces"]] == names[:3]
    sender.trace(base + 500 * SEC, spans=1, trace_id=ids[2])  # newer than every match
    sender.trace(base + 45 * SEC, trace_id=0x7B0)  # a new trace amid the listed ones
    sender.flush()
    _wait(c, lambda: len(rows(limit=100)["traces"]) == 11)
    listed = [t["trace_id"] for t in first["traces"]]
    cursor = first["next"]
    while cursor is not None:
        page = rows(limit=3, cursor=cursor)
        listed += [t["trace_id"] for t in page["traces"]]
        cursor = page["next"]
    assert listed == names
    fresh = [t["trace_id"] for t in rows(limit=100)["traces"]]
    assert fresh[0] == f"{ids[2]:032x}" and f"{0x7B0:032x}" in fresh
    sender.shutdown()
