"""`roomscope demo`: a real subprocess, a fresh store, a realistic workload, real output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import read_store

ROOMSCOPE = str(Path(sys.executable).with_name("roomscope"))


def test_demo_fills_a_store_and_prints_sessions_and_examples(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    started = time.monotonic()
    proc = subprocess.run(
        [ROOMSCOPE, "demo", "--db", str(db)], capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert took < 30
    out = proc.stdout
    commands = [line for line in out.splitlines() if line.startswith("$ roomscope --db ")]
    assert len(commands) >= 5
    assert commands[0].endswith(" session list")
    assert out.splitlines()[1].split()[:5] == ["ID", "ROOM", "PROJECT", "STARTED", "ENDED"]
    for expected in ("studio-render-42", "trace ", "agent.turn", "    llm.call", "ERROR"):
        assert expected in out
    # The agents speak GenAI: usage per model, priced from the demo's prices file, one unpriced.
    usage = out[out.index("usage --by model") :]
    assert "claude-sonnet-4" in usage and "unpriced" in usage and "ticket.lookup" in usage
    llm = read_store(
        db,
        "SELECT count(*), sum(attributes['gen_ai.usage.input_tokens']::INT) FROM spans"
        " WHERE attributes['gen_ai.operation.name'] = 'chat'",
    )[0]
    assert llm[0] >= 30 and f"{llm[1]} input tokens" in usage

    rooms = read_store(db, "SELECT DISTINCT room FROM spans ORDER BY room")
    assert [r[0] for r in rooms] == ["lobby", "studio", "support"]
    sources = dict(read_store(db, "SELECT source, count(*) FROM sessions GROUP BY source"))
    assert sources["explicit"] >= 2 and sources["inferred"] >= 2
    severities = read_store(db, "SELECT DISTINCT severity_number FROM logs ORDER BY 1")
    assert [s[0] for s in severities] == [1, 5, 9, 13, 17, 21]
    (nested, slow, failed, span_minutes) = read_store(
        db,
        "SELECT count(*) FILTER (WHERE parent_span_id IS NOT NULL),"
        " count(*) FILTER (WHERE duration_ns > 1e9), count(*) FILTER (WHERE status_code = 'ERROR'),"
        " date_diff('minute', min(start_time), max(end_time)) FROM spans",
    )[0]
    assert nested >= 20 and slow >= 3 and failed >= 3 and span_minutes >= 5
    metrics = read_store(db, "SELECT DISTINCT name FROM metric_points ORDER BY 1")
    assert [m[0] for m in metrics] == ["agent.turns", "llm.latency", "tools.queue.depth"]

    again = subprocess.run(
        [ROOMSCOPE, "demo", "--db", str(db)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "exists" in again.stderr


def test_demo_without_db_uses_a_temp_dir(tmp_path: Path) -> None:
    proc = subprocess.run(
        [ROOMSCOPE, "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    stores = list(tmp_path.glob("roomscope-demo-*/demo.duckdb"))
    assert len(stores) == 1 and str(stores[0]) in proc.stdout
