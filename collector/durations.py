"""The one grammar for durations and ages: a number, optionally followed by a unit.

Units: ``ns``, ``us`` (or ``µs``), ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``. What a bare number
means is the caller's one rule: in settings (``retention.max_age``, ``compaction.after`` and
every other duration setting) a bare number is **seconds**; in the query filters of the CLI and
the API (``--min-duration``, ``min_duration``) it is **milliseconds**, as SPEC 5 says.
"""

from __future__ import annotations

import re

NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h|d|w)?\s*$")


def duration_ns(text: str | float, bare: str) -> int:
    """``text`` in nanoseconds; a bare number is in unit ``bare``. ValueError when it is not
    a non-negative number with an optional unit."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = repr(text)
    m = _RE.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return round(float(m.group(1)) * NS[m.group(2) or bare])


def seconds(text: str | float) -> float:
    """A duration setting in seconds (a bare number is seconds): ``7d``, ``90m``, ``3600``."""
    return duration_ns(text, "s") / 1e9


def has_unit(text: str) -> bool:
    """True when ``text`` is a duration with an explicit unit (``15m``, not ``15``)."""
    m = _RE.match(str(text))
    return bool(m and m.group(2))
