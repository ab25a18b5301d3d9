"""Which DuckDB errors mean the store cannot be written (retryable), not bad data; for a lake,
which mean a commit conflict or the catalog or the files out of reach."""

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


# Error text that means the catalog or the object store cannot be reached (not bad data).
_UNREACHABLE = (
    "connection",
    "could not connect",
    "unable to connect",
    "server closed",
    "refused",
    "timed out",
    "timeout",
    "terminating",
    "no route",
    "broken pipe",
    "http error",
    "http request",
)
# Errors about a statement or its data, whatever their text says (a value may hold a URL).
_DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.BinderException,
    duckdb.ParserException,
    duckdb.ConstraintException,
    duckdb.CatalogException,
)


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and "conflict" in str(exc).lower()


def is_unreachable(exc: BaseException) -> bool:
    """True when a lake operation failed because the catalog or the files are out of reach."""
    if isinstance(exc, _DATA_ERRORS):
        return False
    if is_store_trouble(exc):
        return True
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(s in text for s in _UNREACHABLE)
