"""Lake query benchmark (not run by pytest or CI): the query benchmark's seed queries on a lake.

Starts a throwaway PostgreSQL (tests/postgres.py), copies a store file built by
tests/benchmarks/query.py into a new lake with ``roomscope migrate``'s code (files in a temp
dir), runs the lake's maintenance round once (DuckLake's merge, sorted by room and start time,
as the replica holding the lease does), then times the seed queries through the query library
and through the REST API (the query port's app served over loopback HTTP), warm and cold, as
query.py does on the file; and prints the lake's bytes a span.

    python tests/benchmarks/lake_query.py --store /tmp/rs-10m.duckdb --runs 5
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
sys.path.insert(0, str(ROOT))

from postgres import running_postgres  # noqa: E402
from query_api import time_api  # noqa: E402

from collector.settings import load_settings  # noqa: E402
from collector.store import create_store, migrate_to_lake  # noqa: E402
from collector.store.lake_connect import LakeConfig  # noqa: E402
from collector.store.lake_maintenance import LakeMaintenance, MaintenancePlan  # noqa: E402
from collector.store.reads import open_lake_reader  # noqa: E402

# tests/benchmarks/query.py, by path: `query` is roomscope's package
_spec = importlib.util.spec_from_file_location(
    "query_benchmark", ROOT / "tests/benchmarks/query.py"
)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="a store file built by query.py")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default=None, help="time only queries whose label starts so")
    ap.add_argument("--no-api", action="store_true")
    args = ap.parse_args()

    with duckdb.connect(args.store, read_only=True) as con:
        samples = bench.pick_samples(con)
        (spans,) = con.execute("SELECT count(*) FROM spans").fetchone()
    workdir = Path(tempfile.mkdtemp(prefix="roomscope-lake-query-"))
    try:
        with running_postgres() as pg:
            catalog = pg.create_database("bench")
            data = workdir / "lake"
            flags = {"store.backend": "ducklake", "store.catalog": catalog}
            settings = load_settings(env={}, flags={**flags, "store.data_path": str(data)})
            t0 = time.perf_counter()
            copied = migrate_to_lake(settings, args.store)
            took = time.perf_counter() - t0
            print(f"migrated {copied.get('span_data', 0):,} spans in {took:.0f} s")
            config = LakeConfig(catalog, str(data))
            budget = settings.get("store.memory_limit")
            store = create_store(settings)
            store.open()
            try:
                plan = MaintenancePlan(0, 3600, budget, max_files=10**6)
                job = LakeMaintenance(config, "bench", plan, forget=None)
                t0 = time.perf_counter()
                done = job.run_once()
                print(f"maintenance round: {done} in {time.perf_counter() - t0:.0f} s")
                job.stop()
            finally:
                store.close()
            size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
            print(f"lake files {size / 1e6:,.0f} MB = {size / spans:.1f} bytes/span")

            def connect() -> duckdb.DuckDBPyConnection:
                return open_lake_reader(config, budget)

            time_library = bench.time_library
            time_library(lambda: bench.reader_on(connect()), samples, args.runs, args.only)
            if not args.no_api:
                time_api(connect, samples, args.runs, args.only, bench.sql_count)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
