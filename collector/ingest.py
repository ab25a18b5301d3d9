"""What both receivers do with a request: decode it off the event loop, queue it, await its
commit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .columns import Decoded
from .decode import decode_body
from .tagging import Tagger
from .writer import Writer


class Ingestor:
    def __init__(
        self, writer: Writer, tagger: Tagger, decode_threads: int = 2, fast_decode: bool = True
    ):
        self.writer = writer
        self.tagger = tagger
        self.fast_decode = fast_decode
        self._pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="roomscope-decode")
        self.accepting = True
        self._decoding = 0  # requests between arrival and the writer's queue
        self._lock = threading.Lock()  # the HTTP and gRPC receivers run separate event loops
        writer.decoding = lambda: self._decoding

    def _count(self, delta: int) -> None:
        with self._lock:
            self._decoding += delta

    async def _export(self, decode: Callable[[], Decoded]) -> Decoded:
        loop = asyncio.get_running_loop()
        self._count(1)
        try:
            decoded = await loop.run_in_executor(self._pool, decode)
            future = self.writer.submit(decoded)  # raises Overloaded / StoreUnavailable
        finally:
            self._count(-1)
        await asyncio.wrap_future(future)
        return decoded

    async def export_body(
        self, signal: str, body: bytes, encoding: str, project: str | None = None
    ) -> Decoded:
        """An OTLP body (HTTP, already decompressed, or a gRPC request's bytes) → committed.

        ``project`` (an ingest token's) is stamped on every record, whatever the data says."""
        tagger = self.tagger if project is None else self.tagger.forced(project)
        return await self._export(lambda: self._decode(signal, body, encoding, tagger))

    def _decode(self, signal: str, body: bytes, encoding: str, tagger: Tagger) -> Decoded:
        """Decode, and do the session tracker's per-batch work here, in a decode thread, rather
        than on the writer thread that every record passes."""
        decoded = decode_body(signal, body, encoding, tagger, self.fast_decode)
        tracker = self.writer.tracker
        if tracker is not None and decoded.accepted:
            decoded.sessions = tracker.summarize(decoded.table, decoded.signal)
        return decoded

    def close(self) -> None:
        self.accepting = False
        self._pool.shutdown(wait=True)
