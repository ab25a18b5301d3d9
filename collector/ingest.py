"""What both receivers do with a request: decode it, queue it, await its commit.

Small protobuf trace bodies (the usual exporter batch: 512 spans are 130-250 KB) are decoded
on the receiver's event loop by the C decoder, everything else in a decode thread. Inline is
faster on few cores: the writer thread, which bounds ingest, takes the GIL back many times
during each DuckDB statement, and every thread more that wants it makes each of those waits
longer (HTTP, 8 connections, on 2 cores: ~89 k spans/s with two decode threads, ~102 k with
one, ~111 k inline). The C decoder takes ~4 ms for 256 KiB; larger bodies, and the Python
decoders (JSON, logs, metrics: 4-30x slower), would hold the event loop too long."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .columns import Decoded
from .decode import decode_body, fast_path
from .tagging import Tagger
from .writer import Writer


class Ingestor:
    def __init__(
        self,
        writer: Writer,
        tagger: Tagger,
        *,
        fast_decode: bool,
        inline_bytes: int,
        decode_threads: int = 2,
    ):
        self.writer = writer
        self.tagger = tagger
        self.fast_decode = fast_decode
        self.inline_bytes = inline_bytes
        self._pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="roomscope-decode")
        self.accepting = True
        self._decoding = 0  # requests between arrival and the writer's queue
        self._lock = threading.Lock()  # the HTTP and gRPC receivers run separate event loops
        writer.decoding = lambda: self._decoding

    def _count(self, delta: int) -> None:
        with self._lock:
            self._decoding += delta

    async def _export(self, decode: Callable[[], Decoded], inline: bool) -> Decoded:
        self._count(1)
        try:
            self.writer.refuse_if_full()
            if inline:
                decoded = decode()
            else:
                decoded = await asyncio.get_running_loop().run_in_executor(self._pool, decode)
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
        inline = len(body) <= self.inline_bytes and fast_path(signal, encoding, self.fast_decode)
        return await self._export(lambda: self._decode(signal, body, encoding, tagger), inline)

    def decode(self, signal: str, body: bytes, encoding: str) -> Decoded:
        """Decode and tag a body as export_body does, without queueing it (roomscope import
        submits to the writer itself)."""
        return self._decode(signal, body, encoding, self.tagger)

    def _decode(self, signal: str, body: bytes, encoding: str, tagger: Tagger) -> Decoded:
        """Decode, and do the session tracker's per-batch work here, rather than on the writer
        thread that every record passes."""
        decoded = decode_body(signal, body, encoding, tagger, self.fast_decode)
        tracker = self.writer.tracker
        if tracker is not None and decoded.accepted:
            decoded.sessions = tracker.summarize(decoded.table, decoded.signal)
        return decoded

    def close(self) -> None:
        self.accepting = False
        self._pool.shutdown(wait=True)
