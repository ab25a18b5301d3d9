"""The forwarding queue (version 8): committed batches waiting to be sent upstream.

With forwarding on (:meth:`Outbox.open`), every append also writes one ``forward_outbox`` row
per signal in the same transaction: where its payload is in the queue's segment files
(collector.store.spool), written just before. The payload is the batch's rows exactly as
committed (inferred session ids filled in), with the resources and attribute keysets they
refer to, as Arrow IPC streams. A receiver's OK therefore means "committed and queued". Arrow
IPC costs the writer little (~1.3 ms per 4,096 spans, no compression); the forwarder threads
turn a batch into an OTLP request on their own time (collector.forward_build).

``forward_endpoints`` holds each endpoint's progress: ``acked_seq`` (every row up to it is
sent, or dropped, for that endpoint) and its counters. A row is deleted once every configured
endpoint is past it. When the queued bytes pass ``max_bytes``, the oldest rows are dropped in
the same transaction as the append that overflowed, and counted per endpoint that had not sent
them: ingest never waits for an upstream.

Only the writer thread runs :meth:`Outbox.stage`, :meth:`Outbox.done` and the like (through
``Writer.run``); :func:`take` reads on a cursor of its own.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from .schema import SHARED_TABLES, storage_table
from .spool import Spool, read

log = logging.getLogger("roomscope.forward")

OUTBOX = "forward_outbox"
ENDPOINTS = "forward_endpoints"
OUTBOX_SQL = (
    f"CREATE TABLE IF NOT EXISTS {OUTBOX} (seq BIGINT, signal VARCHAR, records BIGINT,"
    " bytes BIGINT, queued_at TIMESTAMP_NS, segment BIGINT, spool_offset BIGINT)"
)
ENDPOINTS_SQL = (
    f"CREATE TABLE IF NOT EXISTS {ENDPOINTS} (endpoint VARCHAR PRIMARY KEY, url VARCHAR,"
    " active BOOLEAN, acked_seq BIGINT, sent_batches BIGINT, sent_records BIGINT,"
    " dropped_batches BIGINT, dropped_records BIGINT, last_error VARCHAR,"
    " last_error_at TIMESTAMP_NS, last_sent_at TIMESTAMP_NS)"
)
# The signal tables a batch is made of, and the shared tables each one refers to.
_SIGNALS = ("spans", "logs", "metric_points")
_REFERS = {"spans": tuple(SHARED_TABLES), "logs": ("resources",), "metric_points": ()}


@dataclass(frozen=True)
class OutboxBatch:
    """One queued batch: ``payload`` (None: its bytes are gone) holds ``span_data``,
    ``log_data`` or ``metric_points`` (in the decoders' layout, ``collector.store.ARROW_SCHEMAS``)
    and the shared tables it refers to; :func:`decode` (or :attr:`tables`) reads them."""

    seq: int
    signal: str
    records: int
    payload: bytes | None

    @property
    def tables(self) -> dict[str, pa.Table]:
        return decode(self.payload) if self.payload is not None else {}


def encode(tables: Mapping[str, pa.Table]) -> pa.Buffer:
    """Tables as one BLOB: per table its name's length (u16), name, IPC length (u64), IPC."""
    out = pa.BufferOutputStream()
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        ipc = sink.getvalue()
        raw = name.encode()
        out.write(struct.pack("<H", len(raw)) + raw + struct.pack("<Q", ipc.size))
        out.write(ipc)
    return out.getvalue()


def decode(payload: bytes) -> dict[str, pa.Table]:
    """The tables of a payload that :func:`encode` wrote."""
    tables: dict[str, pa.Table] = {}
    view = memoryview(payload)
    pos = 0
    while pos < len(view):
        (n,) = struct.unpack_from("<H", view, pos)
        name = bytes(view[pos + 2 : pos + 2 + n]).decode()
        pos += 2 + n
        (size,) = struct.unpack_from("<Q", view, pos)
        pos += 8
        tables[name] = pa.ipc.open_stream(pa.py_buffer(view[pos : pos + size])).read_all()
        pos += size
    return tables


@dataclass
class _Staged:
    """What an append adds to the queue, adopted once its transaction commits."""

    rows: list[tuple[int, int, int, int]]  # (seq, bytes, records, segment)
    cutoff: int  # rows up to this seq were dropped (0: none)
    dropped: tuple[int, int] = (0, 0)  # (batches, records)


class Outbox:
    """The queue's state on the writer thread: which endpoints, the bound, and the queued rows'
    (seq, bytes, records), so that an append finds what to drop without a query."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.endpoints: tuple[str, ...] = ()
        self.max_bytes = 0
        self._rows: deque[tuple[int, int, int, int]] = deque()  # seq, bytes, records, segment
        self._bytes = 0
        self._last_seq = 0

    @property
    def on(self) -> bool:
        return bool(self.endpoints)

    def open(
        self, con: duckdb.DuckDBPyConnection, endpoints: Mapping[str, str], max_bytes: int
    ) -> None:
        """Forward to ``endpoints`` (name → URL) from now on. A new endpoint starts with what
        is queued; one no longer configured stays listed, inactive, and holds nothing back."""
        self.load(con)
        first = self._rows[0][0] - 1 if self._rows else self._last_seq
        con.execute(f"UPDATE {ENDPOINTS} SET active = false")
        for name, url in endpoints.items():
            con.execute(
                f"INSERT INTO {ENDPOINTS} VALUES (?, ?, true, ?, 0, 0, 0, 0, NULL, NULL, NULL)"
                " ON CONFLICT (endpoint) DO UPDATE SET url = excluded.url, active = true",
                [name, url, first],
            )
        self.endpoints = tuple(endpoints)
        self.max_bytes = max_bytes
        self._delete_acked(con)

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read the queued rows' sizes and the last seq (at open, and after a reopen)."""
        rows = con.execute(
            f"SELECT seq, bytes, records, segment FROM {OUTBOX} ORDER BY seq"
        ).fetchall()
        self._rows = deque((int(s), int(b), int(r), int(g)) for s, b, r, g in rows)
        self._bytes = sum(row[1] for row in self._rows)
        self.spool.open({row[3] for row in self._rows})
        (acked,) = con.execute(f"SELECT coalesce(max(acked_seq), 0) FROM {ENDPOINTS}").fetchone()
        self._last_seq = max(int(acked), self._rows[-1][0] if self._rows else 0)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    # -- appends --------------------------------------------------------------------------
    def stage(
        self, con: duckdb.DuckDBPyConnection, tables: Mapping[str, pa.Table | None]
    ) -> _Staged | None:
        """Queue the signal tables of an append (each one table of one chunk, as the append
        made it; shared tables before dropping the rows the store holds), inside its
        transaction."""
        if not self.on:
            return None
        staged = _Staged([], 0)
        seq = self._last_seq
        for signal in _SIGNALS:
            batch = tables.get(signal)
            if batch is None:
                continue
            parts = {storage_table(signal): batch}
            for name in _REFERS[signal]:
                shared = tables.get(name)
                if shared is not None:
                    parts[name] = shared
            payload = encode(parts)
            seq += 1
            segment, offset = self.spool.write(seq, payload)
            con.execute(
                f"INSERT INTO {OUTBOX} VALUES (?, ?, ?, ?, make_timestamp_ns(?), ?, ?)",
                [seq, signal, batch.num_rows, payload.size, time.time_ns(), segment, offset],
            )
            staged.rows.append((seq, payload.size, batch.num_rows, segment))
        if not staged.rows:
            return None
        self._drop_oldest(con, staged)
        return staged

    def _drop_oldest(self, con: duckdb.DuckDBPyConnection, staged: _Staged) -> None:
        """Past max_bytes: drop the oldest rows (never the newest one) and count them for each
        endpoint that had not sent them."""
        total = self._bytes + sum(row[1] for row in staged.rows)
        if total <= self.max_bytes:
            return
        rows = [*self._rows, *staged.rows]
        batches = records = 0
        for seq, size, n, _ in rows[:-1]:
            if total <= self.max_bytes:
                break
            total -= size
            staged.cutoff = seq
            batches, records = batches + 1, records + n
        if not staged.cutoff:
            return
        con.execute(
            f"UPDATE {ENDPOINTS} e SET dropped_batches = dropped_batches + d.batches,"
            " dropped_records = dropped_records + d.records, acked_seq = ?"
            f" FROM (SELECT e2.endpoint, count(*) AS batches, sum(o.records) AS records"
            f" FROM {ENDPOINTS} e2 JOIN {OUTBOX} o ON o.seq > e2.acked_seq AND o.seq <= ?"
            " WHERE e2.active GROUP BY e2.endpoint) d WHERE d.endpoint = e.endpoint",
            [staged.cutoff, staged.cutoff],
        )
        con.execute(
            f"UPDATE {ENDPOINTS} SET acked_seq = ? WHERE active AND acked_seq < ?",
            [staged.cutoff, staged.cutoff],
        )
        con.execute(f"DELETE FROM {OUTBOX} WHERE seq <= ?", [staged.cutoff])
        staged.dropped = (batches, records)

    def adopt(self, staged: _Staged | None) -> None:
        """The append committed: its rows are queued (and the dropped ones gone)."""
        if staged is None:
            return
        for row in staged.rows:
            self._rows.append(row)
            self._bytes += row[1]
        self._last_seq = staged.rows[-1][0]
        self.forget(staged.cutoff)
        if staged.cutoff:
            log.warning(
                "forwarding queue full (forward.max_queue_bytes = %d): dropped the oldest unsent"
                " batches: %d (%d records)",
                self.max_bytes,
                staged.dropped[0],
                staged.dropped[1],
            )

    def forget(self, cutoff: int) -> None:
        """Rows up to ``cutoff`` are deleted (committed): so are the segments they alone used."""
        gone = False
        while self._rows and self._rows[0][0] <= cutoff:
            self._bytes -= self._rows.popleft()[1]
            gone = True
        if gone:
            self.spool.prune({row[3] for row in self._rows})

    # -- progress (the forwarder, through Writer.run) -------------------------------------
    def done(
        self,
        con: duckdb.DuckDBPyConnection,
        endpoint: str,
        seq: int,
        sent: tuple[int, int],
        rejected: tuple[int, int],
        error: str | None,
    ) -> int:
        """``endpoint`` is done with every row up to ``seq``: ``sent`` (batches, records)
        delivered, ``rejected`` refused by the upstream for good (counted as dropped). Inside
        the caller's transaction; returns the seq up to which rows are gone (for
        :meth:`forget`, once committed)."""
        now = time.time_ns()
        con.execute(
            f"UPDATE {ENDPOINTS} SET acked_seq = greatest(acked_seq, ?),"
            " sent_batches = sent_batches + ?, sent_records = sent_records + ?,"
            " dropped_batches = dropped_batches + ?, dropped_records = dropped_records + ?,"
            " last_sent_at = CASE WHEN ? > 0 THEN make_timestamp_ns(?) ELSE last_sent_at END,"
            " last_error = coalesce(?, last_error),"
            " last_error_at = CASE WHEN ? IS NULL THEN last_error_at"
            " ELSE make_timestamp_ns(?) END WHERE endpoint = ?",
            [seq, *sent, *rejected, sent[0], now, error, error, now, endpoint],
        )
        return self._delete_acked(con)

    def failed(self, con: duckdb.DuckDBPyConnection, endpoint: str, error: str) -> None:
        """A retryable failure: remembered as the endpoint's last error; nothing advances."""
        con.execute(
            f"UPDATE {ENDPOINTS} SET last_error = ?, last_error_at = make_timestamp_ns(?)"
            " WHERE endpoint = ?",
            [error, time.time_ns(), endpoint],
        )

    def _delete_acked(self, con: duckdb.DuckDBPyConnection) -> int:
        """Delete the rows every active endpoint is past; returns the highest such seq."""
        (cutoff,) = con.execute(
            f"SELECT coalesce(min(acked_seq), 0) FROM {ENDPOINTS} WHERE active"
        ).fetchone()
        cutoff = int(cutoff)
        if cutoff and self._rows and self._rows[0][0] <= cutoff:
            con.execute(f"DELETE FROM {OUTBOX} WHERE seq <= ?", [cutoff])
        return cutoff


def take(
    cur: duckdb.DuckDBPyConnection, spool: Path, endpoint: str, limit: int
) -> list[OutboxBatch]:
    """The oldest batches ``endpoint`` has not sent yet, at most ``limit``, read from the
    segment files in ``spool``. A batch whose bytes are gone has no payload."""
    rows = cur.execute(
        f"SELECT seq, signal, records, segment, spool_offset, bytes FROM {OUTBOX}"
        f" WHERE seq > (SELECT acked_seq FROM {ENDPOINTS} WHERE endpoint = ?)"
        " ORDER BY seq LIMIT ?",
        [endpoint, limit],
    ).fetchall()
    batches = []
    for seq, signal, records, segment, offset, size in rows:
        payload = read(spool, segment, offset, size)
        batches.append(OutboxBatch(int(seq), signal, int(records), payload))
    return batches
