"""The collector's forwarding state (SPEC 12): per endpoint what is queued, sent and dropped.

Read from the store's forwarding tables (collector.store.reads: ``FORWARD_ENDPOINTS``, the
progress and counters the forwarder writes; ``FORWARD_OUTBOX``, the queued batches), so a store
file read with ``--db`` answers as the running collector's API does.
"""

from __future__ import annotations

from typing import Any

import duckdb

from collector.store.reads import FORWARD_ENDPOINTS, FORWARD_OUTBOX

from .records import fetch_records

_ENDPOINTS_SQL = f"""
SELECT e.endpoint, e.url, e.active,
  count(o.seq) AS queued_batches,
  coalesce(sum(o.records), 0)::BIGINT AS queued_records,
  coalesce(sum(o.bytes), 0)::BIGINT AS queued_bytes,
  min(o.queued_at) AS oldest_queued_at,
  e.sent_batches, e.sent_records, e.dropped_batches, e.dropped_records,
  e.last_sent_at, e.last_error, e.last_error_at
FROM {FORWARD_ENDPOINTS} e LEFT JOIN {FORWARD_OUTBOX} o ON o.seq > e.acked_seq
GROUP BY ALL ORDER BY e.active DESC, e.endpoint
"""


def forwarding_status(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """``{"endpoints": [...]}``: each forwarding endpoint (``active``: configured now) with its
    queue (``queued_*``: batches it has not sent, ``oldest_queued_at``), ``sent_*`` and
    ``dropped_*`` counters (dropped: the queue was full, or the upstream refused a batch for
    good) and its last error."""
    try:
        return {"endpoints": fetch_records(con, _ENDPOINTS_SQL)}
    except duckdb.CatalogException:  # a lake: no forwarding queue (forward needs a store file)
        return {"endpoints": []}
