"""Export/import benchmark (not run by pytest or CI): one big session out and back in.

Writes N spans of one session (512-span requests, ~10 attributes per span, as the ingest
benchmark's) to a length-prefixed OTLP protobuf file, imports it with `roomscope import --db`
into a fresh store, then exports the session in every format with `roomscope session export`,
each command a process of its own whose peak RSS (its own VmHWM: command_peak.py) and wall
time are printed.

    python tests/benchmarks/export_import.py                 # 1,000,000 spans
    python tests/benchmarks/export_import.py --spans 200000
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

from command_peak import run_roomscope  # noqa: E402
from otlp_factory import trace_request  # noqa: E402


def run(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one roomscope command in a process of its own."""
    seconds, _, peak = run_roomscope(args)
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        source = d / "big.otlp"
        start = time.time_ns() - 3600 * 10**9
        with source.open("wb") as f:
            for i in range(0, args.spans, 512):
                n = min(512, args.spans - i)
                req = trace_request(n, session="big", start_ns=start + i * 1_000_000, seed=i)
                body = req.SerializeToString()
                f.write(struct.pack(">I", len(body)) + body)
        db = d / "store.duckdb"
        print(f"{args.spans:,} spans, file {source.stat().st_size / 2**20:.0f} MiB")
        s, rss = run(["import", str(source), "--db", str(db)])
        print(f"import      {s:6.1f} s  {args.spans / s:9,.0f} spans/s  peak RSS {rss:6.0f} MiB")
        for fmt, out in (
            ("parquet", d / "pq"),
            ("otlp-proto", d / "out.otlp"),
            ("otlp-json", d / "out.jsonl"),
        ):
            s, rss = run(
                ["--db", str(db), "session", "export", "big", "--format", fmt, "-o", str(out)]
            )
            size = (
                sum(p.stat().st_size for p in out.iterdir()) if out.is_dir() else out.stat().st_size
            )
            print(
                f"{fmt:11} {s:6.1f} s  {args.spans / s:9,.0f} spans/s  peak RSS {rss:6.0f} MiB"
                f"  {size / 2**20:.0f} MiB"
            )


if __name__ == "__main__":
    main()
