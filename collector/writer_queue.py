"""What the writer's queue holds (collector/writer.py): decoded requests waiting for their
commit, functions to run on the writer thread between commits, the stop mark; and a group
commit's tables."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .columns import Decoded
from .store import Store, Task


@dataclass
class Item:
    """A decoded request; its future resolves once its records are committed."""

    decoded: Decoded
    future: Future = field(default_factory=Future)
    nbytes: int = 0  # its tables' Arrow buffers, counted against max_queue_bytes


STOP = object()


@dataclass
class TaskItem:
    """A function run on the writer thread between commits (see :meth:`Writer.run`)."""

    fn: Task
    future: Future = field(default_factory=Future)

    def __call__(self, store: Store) -> None:
        try:
            self.future.set_result(self.fn(store))
        except BaseException as exc:  # the caller gets it from the future
            self.future.set_exception(exc)


def group_tables(
    group: list[Item],
) -> tuple[dict[str, list[pa.Table]], dict[str, list[Any]], dict[str, list[pa.Table]]]:
    """A group's tables by signal, the tracker's summaries (from where requests were
    decoded) in the same order, and the rows the signals' rows refer to (resources)."""
    tables: dict[str, list[pa.Table]] = {}
    summaries: dict[str, list[Any]] = {}
    side: dict[str, list[pa.Table]] = {}
    for item in group:
        tables.setdefault(item.decoded.signal, []).append(item.decoded.table)
        summaries.setdefault(item.decoded.signal, []).append(item.decoded.sessions)
        for name, table in item.decoded.side.items():
            side.setdefault(name, []).append(table)
    return tables, summaries, side
