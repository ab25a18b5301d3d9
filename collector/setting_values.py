"""The grammar of setting values: sizes (memory, disk), ports, ages, forwarding endpoints and
prices, each a check that returns a problem (or None) for collector/settings_table.py."""

from __future__ import annotations

import re
from typing import Any

from . import durations


def port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number 0-65535 (0 picks a free port)"


def positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be 0 or greater"


def non_empty_list(v: list[str]) -> str | None:
    return None if v and all(isinstance(x, str) and x for x in v) else "must list one key or more"


def age(v: str) -> str | None:
    try:
        durations.seconds(v)
    except ValueError:
        return "is not an age: use e.g. 7d, 12h, 90m, or 0 to keep data forever"
    return None


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIN_MEMORY_LIMIT = 16 * 2**20


def size_bytes(v: str) -> int:
    """A size in DuckDB's syntax (``512MB``, ``1GiB``: KB/MB/GB/TB are powers of 1000,
    KiB/MiB/GiB/TiB of 1024) in bytes; ValueError for anything else."""
    m = _SIZE.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        raise ValueError(v)
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def memory(v: str) -> str | None:
    try:
        n = size_bytes(v)
    except ValueError:
        return (
            "is not a size: use a number and a unit, e.g. 512MB or 1GiB"
            " (KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)"
        )
    return None if n >= MIN_MEMORY_LIMIT else "must be at least 16MiB"


def disk_bytes(v: str) -> int:
    """``retention.max_bytes`` in bytes: a size (size_bytes) or ``0`` (no cap)."""
    return 0 if isinstance(v, str) and v.strip() == "0" else size_bytes(v)


def disk_size(v: str) -> str | None:
    try:
        disk_bytes(v)
    except ValueError:
        return "is not a size: use e.g. 20GB or 500MiB, or 0 for no cap"
    return None


def non_empty(v: str) -> str | None:
    return None if v else "must not be empty"


_ENDPOINT_SCHEMES = ("http://", "https://", "grpc://", "grpcs://")


def endpoints(v: dict[str, Any]) -> str | None:
    """``{name: {url, headers?}}``: OTLP endpoints to forward to (collector.forwarder)."""
    for name, target in v.items():
        if not name or not isinstance(target, dict):
            return f"needs a table per endpoint name, e.g. [forward.endpoints.tempo] (at {name!r})"
        unknown = [k for k in target if k not in ("url", "headers")]
        url = target.get("url")
        if unknown or not isinstance(url, str):
            return f"endpoint {name!r}: needs url (and optional headers), no other keys"
        if not url.startswith(_ENDPOINT_SCHEMES) or not url.split("://", 1)[1].strip("/"):
            return (
                f"endpoint {name!r}: url must be http(s)://HOST:PORT (OTLP/HTTP protobuf) or"
                " grpc(s)://HOST:PORT (OTLP/gRPC)"
            )
        headers = target.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and k and isinstance(x, str) for k, x in headers.items()
        ):
            return f"endpoint {name!r}: headers must be a table of strings"
    return None


_PRICE_KEYS = ("input", "output", "cached_input")


def prices(v: dict[str, Any]) -> str | None:
    """``{model: {input, output[, cached_input]}}``, USD per million tokens, none negative."""
    for model, price in v.items():
        if not model or not isinstance(price, dict):
            return f'needs a table per model name, e.g. [usage.prices."gpt-4o"] (at {model!r})'
        missing = [k for k in ("input", "output") if k not in price]
        unknown = [k for k in price if k not in _PRICE_KEYS]
        if missing or unknown:
            return f"model {model!r}: needs input and output (optional cached_input), no other keys"
        for k, n in price.items():
            if isinstance(n, bool) or not isinstance(n, int | float) or not n >= 0:
                return f"model {model!r}: {k} must be a number of USD per million tokens, >= 0"
    return None
