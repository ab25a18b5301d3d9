"""Golden test: what the CLI prints and what the REST API answers, pinned byte for byte.

One store is built per module (:func:`build_store`), the same every time: the demo workload
(query/demo.py) sent over OTLP/gRPC to a collector, with everything that is random or read from
the wall clock fixed for the test:

- the workload's "now" and seed (``send_workload(now_ns=, seed=)``);
- trace and span ids (``id_generator=``: :class:`SeededIds`) and the metric points' times
  (``metric_time_ns=``), which the SDK takes from its random generator and the wall clock;
- the SDK's resource attributes ``service.instance.id`` (a uuid4 per process) and
  ``telemetry.sdk.version``, through OTEL_RESOURCE_ATTRIBUTES; no other OTEL_* or ROOMSCOPE_*
  variable is seen; the batch processors export only when flushed;
- the collector's receive clock (``received_at``) and the random part of inferred session ids
  (ULIDs), patched for the build only.

``test_the_store_is_the_same_when_built_again`` checks that a second build holds the very same
rows. Every case then runs one command (``roomscope --db STORE ...`` through click's CliRunner)
or one request (to a collector started on a copy of the store) and compares exit code, stdout
and stderr / status and body with its file under tests/golden/, byte for byte; a mismatch
fails with a unified diff.

Regenerate the expected files after an intended change of the output, then review the diff:

    ROOMSCOPE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
    git diff tests/golden/

Nothing is normalised: outputs that would depend on the wall clock are avoided instead.
``--since``/``--until`` take ISO timestamps (never ``15m``), retention is off (the data is
"old"), and no session is ended by the idle sweep while the cases run (a restarted collector
gives active sessions a full idle period; the API's collector has one of a year). Readers
show a session as ended once its last record is ``idle`` old (SPEC 3): their clock
(``query.library.reader``'s) reads ``RECEIVED_NS``, so ``--db`` (idle 300 s) shows the
workload as it was when the collector received it, and the API (idle a year) all active.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import random
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace.id_generator import IdGenerator

import collector.decode
import collector.session_infer
import query.library.reader
from collector.server import loopback_settings
from query.cli import main
from query.cli.demo import SEC, send_workload
from query.http.serving import serving_thread

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("ROOMSCOPE_UPDATE_GOLDEN", "") not in ("", "0")

NOW_NS = 1_767_225_600 * SEC  # 2026-01-01T00:00:00Z: the workload's "now" and its metric times
RECEIVED_NS = NOW_NS + 30 * SEC  # every record's received_at
WORKLOAD_SEED = 7
ID_SEED = 2026
# OTEL_RESOURCE_ATTRIBUTES: what the SDK sets per process (a random uuid4) and per release.
RESOURCE = (
    "service.instance.id=00000000-0000-4000-8000-00000000c0de,telemetry.sdk.version=0.0.0-golden"
)


class SeededIds(IdGenerator):
    """Trace and span ids from a seeded generator (the SDK's are random)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        return True


_new_session_id = collector.session_infer.new_session_id


def seeded_session_id(time_ns: int) -> str:
    """An inferred session id as the collector makes it (a ULID: 10 characters of milliseconds,
    then 16 of random bits), with the random part derived from the time instead."""
    bits = int.from_bytes(hashlib.sha256(str(time_ns).encode()).digest()[:10], "big")
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return _new_session_id(time_ns)[:10] + "".join(
        crockford[(bits >> shift) & 31] for shift in range(75, -1, -5)
    )


def _without_env(mp: pytest.MonkeyPatch, *prefixes: str) -> None:
    for name in list(os.environ):
        if name.startswith(prefixes):
            mp.delenv(name)


def build_store(db: Path) -> dict[str, str]:
    """Fill a fresh store at ``db`` through a collector (stopped again); return the ids that
    cases refer to as ``{name}``."""
    with pytest.MonkeyPatch.context() as mp:
        _without_env(mp, "OTEL_", "ROOMSCOPE_")
        mp.setenv("OTEL_RESOURCE_ATTRIBUTES", RESOURCE)
        # The batch processors export only when flushed (not after 5 s), so every request, and
        # so every group commit, holds the same records: an inferred session's id is made from
        # the first record of the request that starts it.
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
        mp.setenv("OTEL_BLRP_SCHEDULE_DELAY", "3600000")
        # received_at is the receive clock's: collector.decode stamps it with time.time_ns().
        mp.setattr(collector.decode, "time", SimpleNamespace(time_ns=lambda: RECEIVED_NS))
        mp.setattr(collector.session_infer, "new_session_id", seeded_session_id)
        # retention.max_age 0: the data's times are fixed, the retention job's cutoff is not.
        thread = serving_thread(loopback_settings(db, **{"retention.max_age": "0"}))
        running = thread.start()
        try:
            manifest = send_workload(
                f"127.0.0.1:{running.ports['grpc']}",
                seed=WORKLOAD_SEED,
                now_ns=NOW_NS,
                id_generator=SeededIds(ID_SEED),
                metric_time_ns=NOW_NS,
            )
        finally:
            thread.stop()
    slow_error = next(
        s
        for s in manifest.spans
        if s.session == "studio-render-42" and s.status == "ERROR" and s.duration_ns > SEC
    )
    refs = {"slow_error_trace": slow_error.trace_id}
    con = duckdb.connect(str(db), read_only=True)
    try:
        inferred = con.execute(
            "SELECT room, session_id FROM sessions WHERE source = 'inferred' ORDER BY started_at"
        ).fetchall()
    finally:
        con.close()
    assert [room for room, _ in inferred] == ["support", "support", "lobby"]
    refs["support_first"], refs["support_second"], refs["lobby_inferred"] = (
        sid for _, sid in inferred
    )
    return refs


@pytest.fixture(scope="module", autouse=True)
def hermetic_env() -> Iterator[None]:
    """No ROOMSCOPE_* variable reaches the CLI's settings (ROOMSCOPE_UPDATE_GOLDEN itself would
    be refused as an unknown setting), no OTEL_* one the SDK; the readers' clock is fixed."""
    with pytest.MonkeyPatch.context() as mp:
        _without_env(mp, "OTEL_", "ROOMSCOPE_")
        mp.setattr(query.library.reader, "time", SimpleNamespace(time_ns=lambda: RECEIVED_NS))
        yield


@dataclass
class Store:
    db: Path
    refs: dict[str, str]

    def fill(self, text: str) -> str:
        for name, value in self.refs.items():
            text = text.replace("{" + name + "}", value)
        return text


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    db = tmp_path_factory.mktemp("golden") / "store.duckdb"
    return Store(db, build_store(db))


@pytest.fixture(scope="module")
def api(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A collector serving a copy of the store (the --db cases keep reading the original)."""
    copy = tmp_path_factory.mktemp("golden-api") / "store.duckdb"
    for suffix in ("", ".wal"):  # a cleanly stopped collector leaves no WAL, but in case
        if Path(f"{store.db}{suffix}").exists():
            shutil.copyfile(f"{store.db}{suffix}", f"{copy}{suffix}")
    # A year of idle timeout: its session sweep must not end a session during the cases (a
    # restarted collector gives every active session a full idle period from its start).
    settings = loopback_settings(
        copy, **{"retention.max_age": "0", "sessions.idle_timeout": 365 * 86400.0}
    )
    with (
        serving_thread(settings) as running,
        httpx.Client(base_url=f"http://127.0.0.1:{running.ports['api']}", timeout=30) as client,
    ):
        yield client


# -- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    name: str
    args: tuple[str, ...]
    stdin: str | None = None


@dataclass(frozen=True)
class Api:
    name: str
    path: str
    sql: str | None = None  # POST {"sql": ...} to path


def cli(name: str, *args: str, stdin: str | None = None) -> Cli:
    return Cli(name, args, stdin)


STUDIO = "studio-render-42"
LOBBY = "lobby-standup-1"
SPANS_BY_ROOM = (
    "SELECT room, count(*) AS spans, count(*) FILTER (WHERE status_code = 'ERROR') AS errors,"
    " round(avg(duration_ns) / 1e6) AS avg_ms FROM spans GROUP BY room ORDER BY room"
)
SESSION_COLUMNS = (
    "SELECT session_id, room, source, started_at, last_seen_at, ended_at, span_count,"
    " log_count, metric_point_count, error_count, services FROM sessions ORDER BY started_at"
)
SEVERITY_COUNTS = (
    "SELECT severity_text, severity_number, count(*) AS n FROM logs"
    " GROUP BY ALL ORDER BY severity_number"
)
METRIC_POINTS = (
    "SELECT session_id, name, type, unit, value, count, sum, bucket_counts, time"
    " FROM metric_points ORDER BY session_id, name"
)

# "{name}" in an argument or a path: an id of the built store (Store.refs, from build_store).
CLI_CASES = [
    cli("session-list", "session", "list"),
    cli("session-list-json", "session", "list", "-o", "json"),
    cli("session-list-jsonl", "session", "list", "-o", "jsonl"),
    cli("session-list-csv", "session", "list", "-o", "csv"),
    cli("session-list-room", "session", "list", "--room", "support"),
    cli("session-list-active-room-limit", "session", "list", "--active", "--room", "lobby",
        "--limit", "1"),
    cli("session-list-ended-none", "session", "list", "--ended"),
    cli("session-list-since-iso", "session", "list", "--since", "2025-12-31T23:53:00Z", "-o",
        "json"),
    cli("session-get", "session", "get", STUDIO),
    cli("session-get-json", "session", "get", STUDIO, "-o", "json"),
    cli("session-get-inferred-csv", "session", "get", "{support_first}", "-o", "csv"),
    cli("session-get-inferred-jsonl", "session", "get", "{lobby_inferred}", "-o", "jsonl"),
    cli("session-traces", "session", "traces", STUDIO),
    cli("session-traces-slow-attrs", "session", "traces", STUDIO, "--min-duration", "1s",
        "--show-attrs"),
    cli("session-traces-room-json", "session", "traces", "--room", "support", "--name", "search",
        "-o", "json"),
    cli("session-traces-errors-csv", "session", "traces", LOBBY, "--attrs", "status=error",
        "--max-duration", "900ms", "-o", "csv"),
    cli("session-traces-trace-id-jsonl", "session", "traces", STUDIO, "--trace-id",
        "{slow_error_trace}", "-o", "jsonl"),
    cli("session-logs", "session", "logs", LOBBY),
    cli("session-logs-warn-json", "session", "logs", STUDIO, "--severity", "warn", "-o", "json"),
    cli("session-logs-room-grep-csv", "session", "logs", "--room", "support", "--grep", "FAILED",
        "-o", "csv"),
    cli("session-logs-error-jsonl", "session", "logs", "{support_first}", "--severity", "17",
        "-o", "jsonl"),
    cli("session-metrics", "session", "metrics", STUDIO),
    cli("session-metrics-json", "session", "metrics", LOBBY, "-o", "json"),
    cli("session-metrics-name-csv", "session", "metrics", "--room", "studio", "--name",
        "llm.latency", "-o", "csv"),
    cli("session-metrics-name-jsonl", "session", "metrics", LOBBY, "--name", "agent.turns", "-o",
        "jsonl"),
    cli("traces", "traces"),
    cli("traces-room-slow-errors-json", "traces", "--room", "studio", "--min-duration", "1000",
        "--attrs", "status=error", "-o", "json"),
    cli("traces-name-room-jsonl", "traces", "--name", "LLM", "--room", "lobby", "--limit", "4",
        "-o", "jsonl"),
    cli("traces-service-max-duration-csv", "traces", "--service", "tools", "--max-duration",
        "100ms", "-o", "csv"),
    cli("traces-session-attrs-limit", "traces", "--session", STUDIO, "--attrs", "user=user-1",
        "--attrs", "kind=SERVER", "--limit", "3"),
    cli("traces-since-until", "traces", "--since", "2025-12-31T23:55:00Z", "--until",
        "2025-12-31T23:55:30Z", "--attrs", "service=agent"),
    cli("trace", "trace", "{slow_error_trace}"),
    cli("trace-show-attrs", "trace", "{slow_error_trace}", "--show-attrs"),
    cli("trace-json", "trace", "{slow_error_trace}", "-o", "json"),
    cli("trace-csv", "trace", "{slow_error_trace}", "-o", "csv"),
    cli("trace-jsonl", "trace", "{slow_error_trace}", "-o", "jsonl"),
    cli("rooms", "rooms"),
    cli("rooms-json", "rooms", "-o", "json"),
    cli("rooms-csv", "rooms", "-o", "csv"),
    cli("rooms-jsonl", "rooms", "-o", "jsonl"),
    cli("usage-by-model", "usage", "--by", "model"),
    cli("usage-by-tool-csv", "usage", "--by", "tool", "-o", "csv"),
    cli("sql", "sql", SPANS_BY_ROOM),
    cli("sql-json", "sql", SESSION_COLUMNS, "-o", "json"),
    cli("sql-csv", "sql", METRIC_POINTS, "-o", "csv"),
    cli("sql-jsonl-stdin", "sql", "-", "-o", "jsonl", stdin=SEVERITY_COUNTS),
    cli("error-bad-duration", "traces", "--min-duration", "abc"),
    cli("error-bad-limit", "session", "list", "--limit", "0"),
    cli("error-unknown-session", "session", "get", "no-such-session"),
    cli("error-bad-trace-id", "trace", "not-a-trace-id"),
    cli("error-sql-write", "sql", "DELETE FROM spans"),
]  # fmt: skip

API_CASES = [
    Api("sessions", "/api/v1/sessions"),
    Api("sessions-filtered", "/api/v1/sessions?room=support&active=true&limit=1"),
    Api("session", f"/api/v1/sessions/{STUDIO}"),
    Api("session-inferred", "/api/v1/sessions/{support_second}"),
    Api("session-events", f"/api/v1/sessions/{STUDIO}/events"),
    Api("session-events-inferred", "/api/v1/sessions/{lobby_inferred}/events"),
    Api("session-spans", f"/api/v1/sessions/{STUDIO}/spans?min_duration=1s"),
    Api("session-logs", f"/api/v1/sessions/{LOBBY}/logs?severity=warn"),
    Api("session-metrics", f"/api/v1/sessions/{STUDIO}/metrics"),
    Api("traces-filtered", "/api/v1/traces?room=studio&min_duration=1000&attrs=status=error"),
    Api("traces-name-limit", "/api/v1/traces?name=tool&service=tools&limit=3"),
    Api("trace", "/api/v1/traces/{slow_error_trace}"),
    Api("rooms", "/api/v1/rooms"),
    Api("usage-by-room", "/api/v1/usage?by=room"),
    Api("sql", "/api/v1/sql", sql=SPANS_BY_ROOM),
    Api("error-sql-write", "/api/v1/sql", sql="DROP TABLE spans"),
    Api("error-bad-parameter", "/api/v1/traces?min_duration=abc"),
    Api("error-unknown-session", "/api/v1/sessions/no-such-session"),
    Api("error-bad-trace-id", "/api/v1/traces/not-hex"),
    Api("openapi", "/openapi.json"),
]


# -- running and comparing ------------------------------------------------------------------


def _section(title: str, content: str) -> str:
    """A titled section; a missing final newline is marked (as diff does) so that it shows."""
    if content and not content.endswith("\n"):
        content += "\n\\ no newline at end\n"
    return f"--- {title}\n{content}"


def run_cli(store: Store, case: Cli) -> str:
    args = [store.fill(a) for a in case.args]
    stdin = None if case.stdin is None else store.fill(case.stdin)
    result = CliRunner().invoke(
        main,
        ["--db", str(store.db), *args],
        input=stdin,
        catch_exceptions=False,
        prog_name="roomscope",
    )
    command = "$ roomscope --db STORE " + shlex.join(args)
    if stdin is not None:
        command = f"$ echo {shlex.quote(stdin)} | roomscope --db STORE {shlex.join(args)}"
    return (
        f"{command}\nexit code: {result.exit_code}\n"
        + _section("stdout", result.stdout)
        + _section("stderr", result.stderr)
    )


def run_api(store: Store, client: httpx.Client, case: Api) -> tuple[str, str]:
    """The expected file's text, and the same with the body pretty-printed (for diffs)."""
    path = store.fill(case.path)
    if case.sql is None:
        r = client.get(path)
        request = f"GET {path}"
    else:
        r = client.post(path, json={"sql": case.sql})
        request = f"POST {path}  {json.dumps({'sql': case.sql})}"
    head = f"{request}\nstatus: {r.status_code}\ncontent-type: {r.headers.get('content-type')}\n"
    return head + _section("body", r.text), head + _section("body", _pretty(r.text))


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False) + "\n"
    except ValueError:
        return body


def _diff(name: str, expected: str, actual: str, limit: int = 300) -> str:
    lines = list(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"tests/golden/{name}.txt (expected)",
            f"{name} (actual)",
        )
    )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... {len(lines) - limit} more lines of diff\n"]
    return "".join(lines)


def check(name: str, actual: str, readable: str | None = None) -> None:
    """Compare with (or, updating, write) tests/golden/<name>.txt; ``readable``: the actual
    output with its body pretty-printed, for a diff of an API body (one line of JSON)."""
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        if not path.exists() or path.read_bytes() != actual.encode():
            path.write_bytes(actual.encode())
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; generate it with ROOMSCOPE_UPDATE_GOLDEN=1", pytrace=False)
    expected = path.read_bytes().decode()  # bytes: no newline translation
    if expected == actual:
        return
    diff = _diff(name, expected, actual)
    if readable is not None:
        head, sep, body = expected.partition("--- body\n")
        body = _pretty(body.removesuffix("\n\\ no newline at end\n"))
        # The raw diff when the bodies differ only in what pretty-printing hides (spacing).
        diff = _diff(name, head + sep + body, readable) or diff
    pytest.fail(
        f"output differs from tests/golden/{name}.txt (ROOMSCOPE_UPDATE_GOLDEN=1 rewrites it):"
        f"\n{diff}",
        pytrace=False,
    )


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli(store: Store, case: Cli) -> None:
    check(f"cli-{case.name}", run_cli(store, case))


@pytest.mark.parametrize("case", API_CASES, ids=[c.name for c in API_CASES])
def test_api(store: Store, api: httpx.Client, case: Api) -> None:
    check(f"api-{case.name}", *run_api(store, api, case))


def test_no_stale_golden_files() -> None:
    """Every file under tests/golden/ belongs to a case (updating removes the others)."""
    names = {f"cli-{c.name}.txt" for c in CLI_CASES} | {f"api-{c.name}.txt" for c in API_CASES}
    assert len(names) == len(CLI_CASES) + len(API_CASES), "case names must be unique"
    stale = sorted(p.name for p in GOLDEN.glob("*") if p.name not in names)
    if UPDATE:
        for name in stale:
            (GOLDEN / name).unlink()
        return
    assert not stale, f"files of no case in tests/golden/: {stale}"


TABLES = ("spans", "logs", "metric_points", "sessions", "session_events")


def _dump(db: Path) -> dict[str, Any]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
    finally:
        con.close()


def test_the_store_is_the_same_when_built_again(
    store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What the cases rest on: a second build holds the very same rows (else a golden case
    would fail now and then rather than on a change of the output)."""
    again = tmp_path_factory.mktemp("golden-again") / "store.duckdb"
    assert build_store(again) == store.refs
    first, second = _dump(store.db), _dump(again)
    for table in TABLES:
        assert first[table] == second[table], table
