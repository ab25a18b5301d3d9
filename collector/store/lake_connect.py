"""Connecting to a DuckLake: the extensions from their wheels, the lake attached, the views.

DuckDB's ``ducklake``, ``postgres`` (internal name ``postgres_scanner``) and ``httpfs``
extensions come from the PyPI wheels ``duckdb-extension-*`` pinned with DuckDB; nothing is
downloaded at run time. DuckDB loads an extension by name from
``<extension_directory>/<version>/<platform>/<name>.duckdb_extension``, so
:func:`extension_directory` lays out one such folder of symlinks into the wheels.

:func:`connect` attaches the lake (catalog ``lake``) to a new in-memory database and creates,
in that database's ``main`` schema, one view per lake table under the table's own name, plus
the ``span_rows``, ``spans`` and ``logs`` views of the file store (the same SQL). A cursor of
the connection thus resolves every name of :mod:`collector.store.reads` as it does on a store
file, and the query library runs unchanged. The writer uses a cursor with ``USE lake``, where
the same names are the lake's tables.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from ..absent_modules import skip_absent
from ..errors import StoreError
from .lake_layout import view_statements

LAKE = "lake"  # the attached lake's catalog name
EXTENSIONS = {"ducklake": "ducklake", "postgres_scanner": "postgres", "httpfs": "httpfs"}


@dataclass(frozen=True)
class LakeConfig:
    """Where a lake is (settings ``store.catalog``, ``store.data_path``, ``store.s3_*``)."""

    catalog: str  # postgresql://user@host:port/db
    data_path: str  # a directory, or s3://bucket/prefix
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"

    @property
    def location(self) -> str:
        return f"ducklake:{self.catalog}"

    def check(self) -> None:
        scheme = urlsplit(self.catalog).scheme
        if scheme not in ("postgresql", "postgres"):
            raise StoreError(
                f"store.catalog must be a PostgreSQL URL (postgresql://user@host:port/db),"
                f" not {self.catalog!r}"
            )
        if not self.data_path:
            raise StoreError("a ducklake store needs store.data_path (a directory or s3://...)")


def parse_store(option: str) -> str:
    """The catalog URL of a ``--store ducklake:postgresql://...`` option (a usage error when it
    is not one)."""
    if not option.startswith("ducklake:"):
        raise StoreError(f"--store must be ducklake:postgresql://user@host:port/db, not {option!r}")
    return option.removeprefix("ducklake:")


def _wheel_file(package: str) -> Path:
    try:
        module = importlib.import_module(f"duckdb_extension_{package}")
    except ImportError:
        raise StoreError(
            f"the DuckDB extension package duckdb-extension-{package} is not installed"
            " (pip install 'roomscope' installs it)"
        ) from None
    found = sorted(Path(module.__file__ or "").parent.glob("extensions/*/*.duckdb_extension"))
    if not found:
        raise StoreError(f"duckdb-extension-{package} holds no extension file")
    return found[-1]


def extension_directory() -> str:
    """A folder laid out as DuckDB's extension directory, of symlinks into the wheels."""
    version = "v" + duckdb.__version__
    with contextlib.closing(duckdb.connect()) as probe:
        row = probe.execute("PRAGMA platform").fetchone()
    platform = str(row[0]) if row else "linux_amd64"
    root = Path(tempfile.gettempdir()) / f"roomscope-duckdb-extensions-{os.getuid()}"
    folder = root / version / platform
    folder.mkdir(parents=True, exist_ok=True)
    for name, package in EXTENSIONS.items():
        target = _wheel_file(package)
        link = folder / f"{name}.duckdb_extension"
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        fresh = folder / f".{name}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        fresh.symlink_to(target)
        os.replace(fresh, link)  # atomic: another process may be doing the same
    return str(root)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _s3_secret(con: duckdb.DuckDBPyConnection, config: LakeConfig) -> None:
    """Credentials for an s3:// data path from the standard AWS_* variables."""
    options = [
        "TYPE s3",
        f"REGION {_literal(config.s3_region)}",
        f"KEY_ID {_literal(os.environ.get('AWS_ACCESS_KEY_ID', ''))}",
        f"SECRET {_literal(os.environ.get('AWS_SECRET_ACCESS_KEY', ''))}",
    ]
    if os.environ.get("AWS_SESSION_TOKEN"):
        options.append(f"SESSION_TOKEN {_literal(os.environ['AWS_SESSION_TOKEN'])}")
    if config.s3_endpoint:
        parts = urlsplit(
            config.s3_endpoint if "//" in config.s3_endpoint else "//" + config.s3_endpoint
        )
        options += [f"ENDPOINT {_literal(parts.netloc)}", "URL_STYLE 'path'"]
        if parts.scheme == "http":
            options.append("USE_SSL false")
    con.execute(f"CREATE OR REPLACE SECRET roomscope_s3 ({', '.join(options)})")


def connect(
    config: LakeConfig, memory_limit: str, *, read_only: bool = False, threads: int = 0
) -> duckdb.DuckDBPyConnection:
    """A new in-memory database with the lake attached as ``lake`` and the read views made
    (see the module). Raises StoreError when the lake cannot be reached."""
    config.check()
    skip_absent()
    con = duckdb.connect(
        config={
            "extension_directory": extension_directory(),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET memory_limit = {_literal(memory_limit)}")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        for name in EXTENSIONS:
            con.execute(f"LOAD {name}")
        if config.data_path.startswith("s3://"):
            _s3_secret(con, config)
        options = [f"DATA_PATH {_literal(config.data_path)}"]
        if read_only:
            options.append("READ_ONLY")
        con.execute(
            f"ATTACH {_literal('ducklake:postgres:' + config.catalog)} AS {LAKE}"
            f" ({', '.join(options)})"
        )
    except duckdb.Error as exc:
        con.close()
        raise StoreError(
            f"cannot open lake {config.catalog} ({config.data_path}): {str(exc).splitlines()[0]}"
        ) from None
    return con


def make_views(con: duckdb.DuckDBPyConnection) -> None:
    """The read views in the in-memory database (after the lake's tables exist)."""
    for statement in view_statements(LAKE):
        con.execute(statement)
