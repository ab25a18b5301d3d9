"""Paging (SPEC 8) of the session list and the room list while ingest goes on: no session or
room repeated or skipped across pages. Sessions are sent with the real OpenTelemetry SDK
exporters (test_paging.Sender) to a collector on free ports, and read through the API.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from conftest import BACKENDS
from test_paging import SEC, Sender, get

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
