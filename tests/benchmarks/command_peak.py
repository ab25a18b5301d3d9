"""One roomscope command in a process of its own, timed, with its peak RSS (benchmarks' helper).

The peak is the command's own ``VmHWM``, which the child writes to stderr at exit: the peak of
its memory after exec. ``ru_maxrss`` (from ``wait4``) also counts the pages of the benchmark
that the child shares between fork and exec: after query.py's timings that was ~600 MB of
DuckDB's cache, and a 256 MB export read as 622 MB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_CHILD = (
    "import atexit, sys\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('peak_kb ' + line.split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "from query.cli import main\n"
    "main()\n"
)


def run_roomscope(args: list[str], count_lines: bool = False) -> tuple[float, int, float]:
    """``roomscope ARGS`` in a process of its own: (seconds, lines of its output, counted when
    ``count_lines``, else thrown away unread; its peak RSS in MiB). Exits when it fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.PIPE if count_lines else subprocess.DEVNULL
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *args], cwd=ROOT, stdout=out, stderr=err, env=env
        )
        lines = 0
        if proc.stdout is not None:
            lines = sum(c.count(b"\n") for c in iter(lambda: proc.stdout.read(1 << 20), b""))
        code = proc.wait()
        seconds = time.perf_counter() - t
        err.seek(0)
        text = err.read().decode(errors="replace")
    if code:
        raise SystemExit(f"roomscope {' '.join(args)} failed ({code}): {text[-2000:]}")
    peaks = [int(w.split()[1]) for w in text.splitlines() if w.startswith("peak_kb ")]
    return seconds, lines, peaks[-1] / 1024
