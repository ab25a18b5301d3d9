"""A streamed list (-o jsonl / -o csv) holds a page, not the list (query.cli.streamed): the
store file read in a small DuckDB budget, one page alive at a time, malloc's freed memory
handed back after each page; the output unchanged (the same as through --server)."""

from __future__ import annotations

import gc
import json
import time
import weakref
from collections.abc import Iterator
from typing import Any

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from test_paging import SEC, Sender
from test_query_fixtures import World

from query.cli import main, streamed
from query.cli.output import OutputFormat
from query.cli.pages import emit_list
from query.library import traces

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


def test_budget_bytes_reads_duckdbs_sizes() -> None:
    assert streamed.budget_bytes("1.0 GiB") == 2**30
    assert streamed.budget_bytes("61.0 MiB") == 61 * 2**20
    assert streamed.budget_bytes("512 bytes") == 512
    assert streamed.budget_bytes("") is None


@pytest.mark.parametrize(("configured", "expected"), [("1GiB", "64.0 MiB"), ("32MB", "30.5 MiB")])
def test_a_stream_budget_only_ever_lowers_the_configured_one(
    configured: str, expected: str
) -> None:
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{configured}'")
    streamed.limit_stream_memory(con)
    assert con.execute("SELECT current_setting('memory_limit')").fetchone() == (expected,)


def test_malloc_trim_is_found_on_linux_glibc() -> None:
    if not streamed.sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert streamed._malloc_trim() is not None
    streamed.release_freed_memory()


def test_a_streamed_session_export_reads_in_the_budget_and_trims_after_each_page(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-o jsonl and csv from a store file: every page read under the stream budget, malloc
    trimmed once a page; -o json keeps the configured budget. The same lines as --server."""
    monkeypatch.setattr("query.cli.pages.STREAM_PAGE", 100)
    budgets: list[str] = []
    real = traces.session_spans

    def spy(con: duckdb.DuckDBPyConnection, *args: Any) -> Any:
        budgets.append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        return real(con, *args)

    monkeypatch.setattr(traces, "session_spans", spy)
    trims: list[int] = []
    monkeypatch.setattr("query.cli.pages.release_freed_memory", lambda: trims.append(1))
    runner = CliRunner()
    args = ["session", "traces", "busy-1"]
    remote = runner.invoke(main, ["--server", world.api_url, *args, "-o", "jsonl"])
    assert remote.exit_code == 0, remote.output
    assert len(trims) == SPANS // 100
    budgets.clear()
    trims.clear()
    with world.offline() as db:
        local = runner.invoke(main, ["--db", db, *args, "-o", "jsonl"])
        assert local.exit_code == 0, local.output
        assert budgets == ["64.0 MiB"] * (SPANS // 100) and len(trims) == SPANS // 100
        budgets.clear()
        as_csv = runner.invoke(main, ["--db", db, *args, "-o", "csv"])
        assert as_csv.exit_code == 0 and budgets[0] == "64.0 MiB"
        assert len(as_csv.stdout.splitlines()) == SPANS + 1
        budgets.clear()
        whole = runner.invoke(main, ["--db", db, *args, "-o", "json", "--limit", "10"])
        assert whole.exit_code == 0 and budgets == ["1.0 GiB"]
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


def test_a_list_too_big_for_the_stream_budget_is_read_in_the_configured_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that runs out of the stream budget runs again in store.memory_limit: the export
    is whole, not an error."""
    monkeypatch.setattr(streamed, "STREAM_MEMORY_LIMIT", 2**20)
    monkeypatch.setattr("query.cli.pages.STREAM_PAGE", 100)
    budgets: list[str] = []
    real = traces.session_spans

    def spy(con: duckdb.DuckDBPyConnection, *args: Any) -> Any:
        budgets.append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        return real(con, *args)

    monkeypatch.setattr(traces, "session_spans", spy)
    args = ["session", "traces", "busy-1", "-o", "jsonl"]
    with world.offline() as db:
        result = CliRunner().invoke(main, ["--db", db, *args])
    assert result.exit_code == 0, result.output
    assert budgets == ["1.0 MiB"] + ["1.0 GiB"] * (SPANS // 100)
    ids = [json.loads(line)["span_id"] for line in result.stdout.splitlines()]
    assert len(ids) == len(set(ids)) == SPANS


def test_each_streamed_read_spills_into_a_folder_of_its_own(tmp_path: Any) -> None:
    """Two processes spilling into the store's one folder overwrite each other's files."""
    folders = []
    for _ in range(2):
        con = duckdb.connect()
        con.execute(f"SET temp_directory = '{tmp_path}'")
        streamed.limit_stream_memory(con)
        (folder,) = con.execute("SELECT current_setting('temp_directory')").fetchone()
        folders.append(folder)
        con.close()
    assert len(set(folders)) == 2 and str(tmp_path) not in folders
    assert all(f.startswith(streamed.tempfile.gettempdir()) for f in folders)
