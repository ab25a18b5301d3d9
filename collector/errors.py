"""roomscope's own exception types; the edges (CLI, HTTP, gRPC) turn them into clean errors."""

from __future__ import annotations


class RoomscopeError(Exception):
    """Base of every error roomscope raises on purpose."""


class SettingsError(RoomscopeError):
    """A setting is unknown or has an invalid value."""


class DecodeError(RoomscopeError):
    """A request body is not a valid OTLP payload (HTTP 400 / gRPC INVALID_ARGUMENT)."""


class PayloadTooLarge(RoomscopeError):
    """A body exceeds limits.max_body_bytes, before or after decompression (HTTP 413)."""


class UnsupportedMediaType(RoomscopeError):
    """A content type or encoding the receiver does not speak (HTTP 415)."""


class Overloaded(RoomscopeError):
    """The write queue is full; the client should retry later (HTTP 503 / gRPC UNAVAILABLE)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(RoomscopeError):
    """The store cannot commit right now (disk full, read-only, closing); retryable."""


class StoreError(RoomscopeError):
    """The store file cannot be opened or has an unknown schema."""


class SchemaMismatch(RuntimeError):
    """A flattener made columns other than its table's schema has (a bug, not bad input): a
    column added to or removed from collector/store/schema.py but not to or from a flattener."""
