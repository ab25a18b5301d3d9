"""The real ``meshagent-cli`` and ``meshagent-otel`` from PyPI in a Python 3.13 venv, built once
per machine in a cache directory (outside the repository and any tmp_path), under a file lock so
two test runs never build it at the same time, and reused by every later test and run.

``python -m tests.meshagent_venv`` builds it ahead of the tests (CI may, the tests do it anyway).
A missing Python 3.13 or an unreachable PyPI fails with a message that says so: never a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The releases SPEC 13 and issue 21 name; the cache directory is per pin.
PACKAGES = ("meshagent-cli==0.56.0", "meshagent-otel==0.56.0")
PYTHON = "python3.13"
PYENV_VERSION = "3.13.0"
_DONE = ".roomscope-complete"


class VenvError(RuntimeError):
    """The venv cannot be built (no Python 3.13, no PyPI)."""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    pins = "-".join(p.replace("==", "-") for p in PACKAGES)
    return base / "roomscope-tests" / pins


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYENV_VERSION", PYENV_VERSION)  # python3.13 through pyenv's shims
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            cmd, env=_python_env(), capture_output=True, text=True, timeout=1200, check=False
        )
    except FileNotFoundError:
        raise VenvError(f"{what}: {cmd[0]} not found") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise VenvError(f"{what} failed ({' '.join(cmd)}):\n" + "\n".join(tail))


def ensure_venv() -> Path:
    """The venv's directory, built if this machine has none yet (minutes, once)."""
    target = cache_dir()
    if (target / _DONE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / (target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it: wait for it
        if (target / _DONE).is_file():
            return target
        shutil.rmtree(target, ignore_errors=True)  # a build that died half-way
        python = shutil.which(PYTHON, path=_python_env().get("PATH"))
        if python is None:
            raise VenvError(
                f"the MeshAgent tests need {PYTHON} (meshagent-cli requires Python 3.13):"
                f" install it, e.g. `pyenv install {PYENV_VERSION}`"
            )
        _run([python, "-m", "venv", str(target)], f"creating a {PYTHON} venv")
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q"]
        _run([*pip, *PACKAGES], f"installing {' '.join(PACKAGES)} from PyPI")
        (target / _DONE).write_text(" ".join(PACKAGES) + "\n")
    return target


if __name__ == "__main__":
    try:
        print(ensure_venv())
    except VenvError as exc:
        sys.exit(str(exc))
