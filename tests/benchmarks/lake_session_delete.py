"""What a lake's session-row update costs as the sessions table grows (not run by pytest or CI).

Every commit that changes existing session rows deletes them (collector/store/lake_sessions.py
``apply_plan``) while its replica holds the session lock, and a DuckLake DELETE scans the
table's files that may hold the ids. Fills a new lake's ``sessions`` with --files files of
--rows rows each, ids ordered in time as inferred sessions' ULIDs are (``--ids ordered``) or
random as explicit session ids may be (``--ids random``), then times deleting one id (rolled
back, median of 5) with each form of the statement.

    python tests/benchmarks/lake_session_delete.py --files 200 --rows 5000 --ids ordered
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from conftest import lake_settings, make_settings  # noqa: E402
from postgres import running_postgres  # noqa: E402

from collector.store import DuckLakeStore, create_store  # noqa: E402

FORMS = {
    "list_contains": "DELETE FROM sessions WHERE list_contains(?, session_id)",
    "in (unnest)": "DELETE FROM sessions WHERE session_id IN (SELECT unnest(?::VARCHAR[]))",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--ids", choices=["ordered", "random"], default="ordered")
    args = ap.parse_args()
    make_id = (
        "printf('01J%010d%013d', {f}, range)"
        if args.ids == "ordered"
        else "md5({f} || '-' || range)"
    )
    with running_postgres() as pg:
        root = Path(tempfile.mkdtemp(prefix="roomscope-session-delete-"))
        store = create_store(make_settings(root / "u.duckdb", **lake_settings(pg, root / "lake")))
        assert isinstance(store, DuckLakeStore)
        store.open()
        con = store.con
        for f in range(args.files):
            con.execute(
                f"INSERT INTO sessions SELECT {make_id.format(f=f)}, 'acme',"
                " 'room' || (range % 50), 'inferred', make_timestamp_ns(range),"
                " make_timestamp_ns(range), NULL, 1, 0, 0, 0, ['agent']"
                f" FROM range({args.rows})"
            )
        (target,) = con.execute(
            f"SELECT {make_id.format(f=args.files // 2)}"
            f" FROM range({args.rows // 2}, {args.rows // 2 + 1})"
        ).fetchone()
        for name, sql in FORMS.items():
            times = []
            for _ in range(5):
                con.begin()
                began = time.perf_counter()
                con.execute(sql, [[target]])
                times.append(time.perf_counter() - began)
                con.rollback()
            print(
                f"{args.files * args.rows:,} session rows in {args.files} files, {args.ids} ids:"
                f" {name} {statistics.median(times) * 1000:.1f} ms",
                flush=True,
            )
        store.close()


if __name__ == "__main__":
    main()
