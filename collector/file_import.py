"""``roomscope import``: OTLP files into a store file or a running collector.

Every request of the files (collector.otlp_files) takes the receivers' path: into a store
file, :class:`StoreSink` runs the collector's own parts without listeners (the store, the
session tracker, the one writer thread, the Ingestor's decode and tag step); into a running
collector, :class:`OtlpSink` sends the bodies to its OTLP/HTTP or OTLP/gRPC port as an exporter
would (collector.otlp_sender, with the OTLP retry rules). Either way a request's records are
committed or rejected with a reason, and :func:`import_files` adds them up in an
:class:`ImportSummary`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow.compute as pc

from .columns import Decoded
from .decode import decode_body
from .errors import DecodeError, Overloaded, RoomscopeError, StoreError
from .ingest import Ingestor
from .otlp_files import Bad, Request, files_of, read_file
from .otlp_sender import Unreachable, open_sender
from .sessions import SessionTracker
from .settings import Settings
from .store import create_store
from .tagging import Tagger
from .writer import Writer

MAX_REASONS = 20  # rejected records and bad lines named one by one in the summary


@dataclass
class ImportSummary:
    requests: int = 0
    records: dict[str, int] = field(default_factory=dict)  # table → records committed
    sessions: set[str] = field(default_factory=set)  # explicit session ids of the records
    roomed: int = 0  # records with a room but no session id: the collector infers theirs
    rejected: int = 0  # records refused (their request's other records are in)
    bad: int = 0  # lines or messages refused whole
    reasons: list[str] = field(default_factory=list)

    def note(self, where: str, message: str) -> None:
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{where}: {message}" if where else message)

    @property
    def failed(self) -> bool:
        return bool(self.rejected or self.bad)

    def count(self, decoded: Decoded) -> None:
        table = decoded.table
        self.records[decoded.signal] = self.records.get(decoded.signal, 0) + table.num_rows
        if table.num_rows:
            sid = table.column("session_id")
            self.sessions.update(s for s in pc.unique(sid).to_pylist() if s is not None)
            no_session = pc.is_null(sid)
            has_room = pc.is_valid(table.column("room"))
            self.roomed += pc.sum(pc.and_(no_session, has_room)).as_py() or 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "records": dict(self.records),
            "sessions": len(self.sessions),
            "records_without_session": self.roomed,
            "rejected": self.rejected,
            "bad": self.bad,
            "reasons": list(self.reasons),
        }


class Sink(Protocol):
    def send(self, request: Request, summary: ImportSummary) -> None: ...

    def close(self, summary: ImportSummary) -> None: ...


class StoreSink:
    """Into a store file no collector holds: the collector's writer path, no listeners."""

    def __init__(self, settings: Settings, *, window: int = 8):
        s = settings
        self.store = create_store(s)
        self.store.open()  # StoreError (in use by a collector: send it there instead)
        try:
            tracker = SessionTracker.from_settings(s, self.store)
            self.writer = Writer.from_settings(self.store, s, tracker)
            self.writer.start()
        except BaseException:
            self.store.close()
            raise
        self.ingestor = Ingestor(
            self.writer,
            Tagger.from_settings(s),
            fast_decode=s.get("ingest.fast_decode"),
            inline_bytes=s.get("ingest.inline_decode_bytes"),
            decode_threads=1,
        )
        self.window = window  # requests queued for commit at once
        self._pending: deque[tuple[Future, Decoded, str]] = deque()

    def send(self, request: Request, summary: ImportSummary) -> None:
        try:
            decoded = self.ingestor.decode(request.signal, request.body, request.encoding)
        except DecodeError as exc:
            summary.bad += 1
            summary.note(request.where, str(exc))
            return
        _rejected(decoded, request.where, summary)
        while True:
            try:
                future = self.writer.submit(decoded)
                break
            except Overloaded:
                if not self._pending:
                    raise
                self._settle(summary)
        self._pending.append((future, decoded, request.where))
        while len(self._pending) > self.window:
            self._settle(summary)

    def _settle(self, summary: ImportSummary) -> None:
        future, decoded, where = self._pending.popleft()
        try:
            future.result()
        except RoomscopeError as exc:
            summary.bad += 1
            summary.note(where, f"not committed: {exc}")
            return
        _counted(decoded, summary)

    def close(self, summary: ImportSummary) -> None:
        try:
            while self._pending:
                self._settle(summary)
        finally:
            self.writer.stop()
            self.ingestor.close()
            self.store.close()


class OtlpSink:
    """Into a running collector (or any OTLP receiver): each body sent to ``url`` as an
    exporter would (collector.otlp_sender: OTLP/HTTP for http(s)://, OTLP/gRPC for grpc(s)://,
    the OTLP retry rules). The records are decoded here too, for the summary."""

    def __init__(self, url: str, tagger: Tagger, *, token: str | None, timeout: float):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.sender = open_sender(url, headers, timeout)
        self.url = url
        self.tagger = tagger

    def send(self, request: Request, summary: ImportSummary) -> None:
        try:
            decoded = decode_body(request.signal, request.body, request.encoding, self.tagger)
        except DecodeError as exc:
            summary.bad += 1
            summary.note(request.where, str(exc))
            return
        try:
            sent = self.sender.send(request.signal, request.body, request.encoding)
        except Unreachable as exc:
            raise StoreError(str(exc)) from None
        if not sent.ok:
            summary.bad += 1
            summary.note(request.where, f"refused by {self.url}: {sent.status}: {sent.message}")
            return
        if sent.rejected:
            decoded.rejected = max(decoded.rejected, sent.rejected)
            decoded.errors = [sent.message] if sent.message else decoded.errors
        _rejected(decoded, request.where, summary)
        _counted(decoded, summary)

    def close(self, summary: ImportSummary) -> None:
        self.sender.close()


def _rejected(decoded: Decoded, where: str, summary: ImportSummary) -> None:
    """Records of a request the decoder rejected, noted in file order."""
    if decoded.rejected:
        summary.rejected += decoded.rejected
        summary.note(where, f"{decoded.rejected} record(s) rejected: {decoded.error_message}")


def _counted(decoded: Decoded, summary: ImportSummary) -> None:
    """A request whose accepted records are in."""
    summary.requests += 1
    summary.count(decoded)


def import_files(
    paths: list[str],
    sink: Sink,
    tagger: Tagger,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Every request of the files through ``sink``; ``progress`` gets bytes read as they go."""
    summary = ImportSummary()
    try:
        for path in files_of(paths):
            seen = 0
            for item in read_file(path, tagger):
                if isinstance(item, Bad):
                    summary.bad += 1
                    summary.note(item.where, item.message)
                else:
                    sink.send(item, summary)
                if progress is not None and item.offset > seen:
                    progress(item.offset - seen)
                    seen = item.offset
    finally:
        sink.close(summary)
    return summary
