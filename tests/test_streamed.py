"""A streamed list (-o jsonl / -o csv) holds a page, not the list (query.cli.streamed): one
page alive at a time, malloc's freed memory handed back after each page; the output unchanged
(the same as through --server)."""

from __future__ import annotations

import gc
import json
import time
import weakref
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from test_paging import SEC, Sender
from test_query_fixtures import World

from query.cli import main, streamed
from query.cli.output import OutputFormat
from query.cli.pages import emit_list

SPANS = 600  # 200 traces of 3 spans


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("streamed") / "roomscope.duckdb")
    try:
        sender = Sender(w.http_url)
        start = time.time_ns() - 600 * SEC
        for i in range(SPANS // 3):
            sender.trace(start + i * 1_000_000, spans=3)
        sender.shutdown()
        deadline = time.monotonic() + 60
        count = {"sql": "SELECT count(*) FROM spans WHERE session_id = 'busy-1'"}
        while httpx.post(w.api_url + "/api/v1/sql", json=count).json()["rows"] != [[SPANS]]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield w
    finally:
        w.stop()


def test_malloc_trim_is_found_on_linux_glibc() -> None:
    if not streamed.sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert streamed._malloc_trim() is not None
    streamed.release_freed_memory()


def test_a_streamed_session_export_trims_after_each_page(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-o jsonl and csv, --db and --server: malloc trimmed once a page (through --db a batch of
    whole traces: 150 spans of 3-span traces); the same lines."""
    monkeypatch.setattr("query.cli.pages.STREAM_PAGE", 150)
    monkeypatch.setattr("query.cli.session_commands.STREAM_PAGE", 150)
    trims: list[int] = []
    monkeypatch.setattr("query.cli.pages.release_freed_memory", lambda: trims.append(1))
    runner = CliRunner()
    args = ["session", "traces", "busy-1"]
    remote = runner.invoke(main, ["--server", world.api_url, *args, "-o", "jsonl"])
    assert remote.exit_code == 0, remote.output
    assert len(trims) == SPANS // 150
    trims.clear()
    with world.offline() as db:
        local = runner.invoke(main, ["--db", db, *args, "-o", "jsonl"])
        assert local.exit_code == 0, local.output
        assert len(trims) == SPANS // 150
        as_csv = runner.invoke(main, ["--db", db, *args, "-o", "csv"])
        assert as_csv.exit_code == 0
        assert len(as_csv.stdout.splitlines()) == SPANS + 1
    assert local.stdout == remote.stdout
    ids = [json.loads(line)["span_id"] for line in local.stdout.splitlines()]
    assert len(ids) == len(set(ids)) == SPANS


class _Page(dict):
    """A page result that can be watched for being freed."""


def test_a_page_is_freed_before_the_next_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    alive: list[bool] = []
    previous: list[weakref.ref] = []

    def fetch(limit: int | None, cursor: str | None) -> dict[str, Any]:
        gc.collect()
        alive.extend(ref() is not None for ref in previous)
        n = int(cursor or 0)
        page = _Page(spans=[{"n": n}], next=str(n + 1) if n < 4 else None)
        previous.append(weakref.ref(page))
        return page

    emit_list(OutputFormat.JSONL, fetch, "spans", [], None)
    assert capsys.readouterr().out.splitlines() == [f'{{"n": {i}}}' for i in range(5)]
    assert len(alive) == 10 and not any(alive)
