"""Which DuckDB errors mean the store cannot be written (retryable), not bad data."""

from __future__ import annotations

import duckdb

from ..errors import StoreUnavailable

# Text of DuckDB errors that mean the file cannot be written (disk full, read-only, I/O error),
# as opposed to a problem with one request's data. DuckDB reports a WAL write failure at commit
# as a TransactionException ("Failed to commit: Could not write file ...").
_STORE_TROUBLE = (
    "could not write",
    "could not read",
    "could not open",
    "could not fsync",
    "could not truncate",
    "no space left",
    "read-only",
    "read only",
    "failed to commit",
    "invalidated",
    "connection already closed",
)


def is_store_trouble(exc: BaseException) -> bool:
    """True when a commit failed because the file cannot be written, not because of the data.

    Running out of the memory budget (``store.memory_limit``, e.g. while a user's query holds
    most of it) is such a case too: the same records commit once the memory is back, so the
    request is answered retryably (503 / UNAVAILABLE), never as a server error."""
    troubles = (duckdb.IOException, duckdb.FatalException, duckdb.OutOfMemoryException, OSError)
    if isinstance(exc, (*troubles, StoreUnavailable)):
        return True
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(s in text for s in _STORE_TROUBLE)


def needs_reopen(exc: BaseException) -> bool:
    """DuckDB invalidates the database after a fatal I/O error; only a reopen brings it back."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.FatalException) or "invalidated" in text or "closed" in text
