"""Keyset paging (SPEC 8): every list is read in a total order of its own, a page at a time.

A list declares its sort key as :class:`Key` columns (SQL expressions, each ascending or
descending); a page is the first ``limit`` rows after the last row of the previous page, in
that order. The cursor handed out with a page holds that last row's key, so the next page
starts exactly there however many rows arrived meanwhile: rows with a key before it were
shown or are new, rows after it are still to come. Nothing is counted or skipped by offset.

Lists whose rows have no unique key (log records, metric points, timeline events) end their
key with a hash of the whole row: rows equal in every key column are then equal in content,
and the cursor also says how many of them (``n``) the previous pages already returned.

A cursor is opaque to users: base64url of a small JSON object, versioned (``v``), naming its
list (``l``) and a fingerprint of the list's filters (``f``), so a cursor used with another
list or other filters, or edited, is refused: ``QueryError("invalid cursor")`` (HTTP 400).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import QueryError

Record = dict[str, Any]
VERSION = 1
# Hidden columns a paged read selects for the key values of each row.
KEY_PREFIX = "_page_k"


@dataclass(frozen=True)
class Key:
    """One column of a list's sort key: ``expr`` over the list's rows, ``desc`` for
    descending, ``ts``: a TIMESTAMP column (its value in a cursor is epoch ns)."""

    expr: str
    desc: bool = False
    ts: bool = False


@dataclass
class Page:
    """One page of a list: its records and the cursor of the next page (None: the last)."""

    records: list[Record]
    next: str | None = None


@dataclass(frozen=True)
class Position:
    """Where a page starts: after the row whose key is ``key`` and ``n`` rows equal to it;
    ``extra``: values a list keeps for all its pages (a session's spans: the snapshot time)."""

    key: tuple[Any, ...] = ()
    n: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def fingerprint(*parts: Any) -> str:
    """A short digest of a list's filters (and ids): a cursor is valid only with the same."""
    text = json.dumps(parts, default=repr, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_cursor(list_name: str, filters: str, pos: Position) -> str:
    body = {"v": VERSION, "l": list_name, "f": filters, "k": list(pos.key), "n": pos.n}
    if pos.extra:
        body["x"] = pos.extra
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None, list_name: str, filters: str, keys: Sequence[Key]) -> Position:
    """The position a cursor names; None or "": the start. Anything but a cursor this list
    handed out for the same filters raises ``QueryError("invalid cursor")``."""
    if not text:
        return Position()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw)
        key, n, extra = body["k"], body["n"], body.get("x", {})
        valid = (
            body["v"] == VERSION
            and body["l"] == list_name
            and body["f"] == filters
            and isinstance(key, list)
            and len(key) == len(keys)
            and all(_valid_value(v, k) for v, k in zip(key, keys, strict=True))
            and isinstance(n, int)
            and not isinstance(n, bool)
            and 0 < n <= 10**9
            and isinstance(extra, dict)
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        valid = False
    if not valid:
        raise QueryError("invalid cursor")
    return Position(tuple(key), n, extra)


def _valid_value(value: Any, key: Key) -> bool:
    if key.ts:
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) < value < 2**63
    return value is None or isinstance(value, str | int | float | bool)


def key_columns(keys: Sequence[Key]) -> str:
    """The SELECT list of the key values (``, expr AS _page_k0, ...``), timestamps as ns."""
    parts = [
        f"epoch_ns({k.expr}) AS {KEY_PREFIX}{i}" if k.ts else f"{k.expr} AS {KEY_PREFIX}{i}"
        for i, k in enumerate(keys)
    ]
    return ", " + ", ".join(parts)


def order_by(keys: Sequence[Key]) -> str:
    return ", ".join(f"{k.expr}{' DESC' if k.desc else ''}" for k in keys)


def from_position(keys: Sequence[Key], pos: Position) -> tuple[list[str], list[Any]]:
    """Conditions for the rows at or after ``pos`` in the order of ``keys`` (empty at the
    start): ``k0 > a OR (k0 = a AND k1 > b) OR ... OR (all equal)``, plus the first column's
    bound alone, which lets DuckDB skip row groups by their zone maps. The rows equal to the
    position are kept: :func:`page_of` drops the ``n`` the previous pages returned."""
    if not pos.key:
        return [], []
    terms: list[str] = []
    params: list[Any] = []

    def value(k: Key) -> str:
        return "make_timestamp_ns(?)" if k.ts else "?"

    for i, k in enumerate(keys):
        parts = [f"{p.expr} = {value(p)}" for p in keys[:i]]
        parts.append(f"{k.expr} {'<' if k.desc else '>'} {value(k)}")
        terms.append("(" + " AND ".join(parts) + ")")
        params.extend([*pos.key[:i], pos.key[i]])
    terms.append("(" + " AND ".join(f"{k.expr} = {value(k)}" for k in keys) + ")")
    params.extend(pos.key)
    first = keys[0]
    bound = f"{first.expr} {'<=' if first.desc else '>='} {value(first)}"
    return [bound, "(" + " OR ".join(terms) + ")"], [pos.key[0], *params]


def page_of(
    rows: list[Record],
    keys: Sequence[Key],
    pos: Position,
    limit: int,
    cursor: Callable[[Position], str],
    keep: bool = False,
) -> Page:
    """The page from rows read with :func:`from_position` and ``LIMIT limit + pos.n + 1``
    (the rows equal to the position first): their first ``pos.n`` rows equal to the position
    dropped, ``limit`` rows kept, hidden key columns removed (``keep``: kept); ``next`` when a
    row remains."""
    names = [f"{KEY_PREFIX}{i}" for i in range(len(keys))]
    skip = 0
    while skip < min(pos.n, len(rows)) and tuple(rows[skip][c] for c in names) == pos.key:
        skip += 1
    rows = rows[skip:]
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = None
    if more and rows:
        last = tuple(rows[-1][c] for c in names)
        same = 0
        for r in reversed(rows):
            if tuple(r[c] for c in names) != last:
                break
            same += 1
        if last == pos.key:  # the whole page equal to the position: count the earlier ones
            same += pos.n
        nxt = cursor(Position(last, same, pos.extra))
    if not keep:
        for r in rows:
            for c in names:
                del r[c]
    return Page(rows, nxt)


def read_limit(limit: int, pos: Position) -> int:
    """The LIMIT of a paged read: the page, the rows equal to the position, one more (is
    there a next page?)."""
    return limit + pos.n + 1


def all_pages(fetch: Callable[[str | None], tuple[list[Record], str | None]]) -> Iterator[Record]:
    """Every record of a list, page after page: ``fetch(cursor)`` → (records, next)."""
    cursor: str | None = None
    while True:
        records, cursor = fetch(cursor)
        yield from records
        if cursor is None:
            return
