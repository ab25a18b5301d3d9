"""A throwaway PostgreSQL server for the DuckLake tests: initdb in a temporary directory, a
free port on 127.0.0.1, started with pg_ctl, stopped (and its files removed) at the end.

The binaries come from PATH or from Debian's /usr/lib/postgresql/<version>/bin (.ci/run
installs the ``postgresql`` package when they are missing). PostgreSQL refuses to run as root:
when the tests run as root (CI), the server runs as the ``postgres`` user Debian's package
creates, in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def pg_bin(name: str) -> str | None:
    """The path of a PostgreSQL server program, or None when none is installed."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """One server: :meth:`start`, :meth:`stop` (and start again: the fault tests), :attr:`url`."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = root
        self.data = root / "data"
        self.port = port or free_port()
        self.user = "postgres" if os.geteuid() == 0 else None  # run as this user (root: not)
        self.db_user = "roomscope"

    @property
    def url(self) -> str:
        return f"postgresql://{self.db_user}@127.0.0.1:{self.port}/postgres"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq keywords (as DuckDB's postgres extension takes them)."""
        return f"host=127.0.0.1 port={self.port} user={self.db_user} dbname={dbname}"

    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        if self.user is not None:
            args = ["runuser", "-u", self.user, "--", *args]
        return subprocess.run(args, check=True, capture_output=True, text=True)

    def init(self) -> None:
        initdb = pg_bin("initdb")
        if initdb is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.root, self.user)
        self._run(
            [
                initdb,
                "-D",
                str(self.data),
                "-U",
                self.db_user,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
            )

    def start(self, timeout: float = 30.0) -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        self._run([pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start"])
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until pg_isready says the server accepts connections (after a start)."""
        isready = pg_bin("pg_isready") or "pg_isready"
        deadline = time.monotonic() + timeout
        args = [isready, "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.db_user]
        while subprocess.run(args, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} did not start: {self.log()}")
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL (a lake's catalog)."""
        psql = pg_bin("psql") or "psql"
        subprocess.run(
            [
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.db_user,
                "-d",
                "postgres",
                "-q",
                "-c",
                f'CREATE DATABASE "{name}"',
            ],
            check=True,
            capture_output=True,
        )
        return f"postgresql://{self.db_user}@127.0.0.1:{self.port}/{name}"

    def log(self) -> str:
        try:
            return (self.root / "log").read_text()[-2000:]
        except OSError:
            return ""


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A started server in a temporary directory, stopped and removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="roomscope-pg-"))
    os.chmod(root, 0o755)
    pg = Postgres(root / "pg")
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
