"""The forwarding queue's payloads: segment files next to the store (``<store>.forward/``).

A queued batch's bytes are appended to the current segment (named by the first seq written to
it) before the transaction that adds its ``forward_outbox`` row commits; the row keeps where
they are. Kept out of DuckDB, a batch costs the writer one ``write`` instead of a second copy
of every record through the write-ahead log and the checkpoints (docs/forwarding.md: the
collector's CPU per span with the queue in a BLOB column was ~40% higher; with these files it
is no higher than without forwarding). Bytes of a rolled-back transaction stay in the segment,
unreferenced. A segment is deleted once no queued row points into it. A process crash loses
nothing (the bytes are in the operating system's cache before the commit); a batch whose bytes
are missing after an operating-system crash is dropped and counted by the forwarder.

Only the writer thread writes and deletes; readers open the segment files themselves.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

SEGMENT_BYTES = 64 * 2**20  # a new segment once the current one holds this much


class Spool:
    """``directory`` None: a temporary one (an in-memory store)."""

    def __init__(self, directory: Path | None):
        self._directory = directory
        self._file: BinaryIO | None = None
        self._segment = 0
        self._size = 0

    @property
    def directory(self) -> Path:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="roomscope-forward-"))
        return self._directory

    def path(self, segment: int) -> Path:
        return self.directory / f"{segment:020d}.spool"

    def open(self, live: Collection[int]) -> None:
        """Delete the segments no queued row points into; the next write starts a new one."""
        self.close()
        if self._directory is not None and not self._directory.exists():
            return
        self.prune(live)

    def write(self, seq: int, payload: pa.Buffer) -> tuple[int, int]:
        """Append ``payload`` (the batch ``seq``); returns (segment, offset)."""
        if self._file is None or self._size >= SEGMENT_BYTES:
            self.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._segment = seq
            self._file = open(self.path(seq), "ab", buffering=0)  # noqa: SIM115
            self._size = self._file.tell()
        offset = self._size
        view = memoryview(payload)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self._size += payload.size
        return self._segment, offset

    def prune(self, live: Collection[int]) -> None:
        """Delete every segment but ``live`` ones and the one being written."""
        if self._directory is None or not self._directory.exists():
            return
        for path in self._directory.glob("*.spool"):
            try:
                segment = int(path.stem)
            except ValueError:
                continue
            if segment not in live and not (self._file is not None and segment == self._segment):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read(directory: Path, segment: int, offset: int, size: int) -> bytes | None:
    """A batch's bytes, or None when they are gone (dropped meanwhile, or lost)."""
    try:
        with open(directory / f"{segment:020d}.spool", "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError:
        return None
    return data if len(data) == size else None
