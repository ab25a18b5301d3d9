"""The session journal: the session rows each replica's commits wrote, for the others to adopt.

At the start of its session turn (:mod:`collector.store.lake_sessions`) a replica adopts the
session rows the other replicas changed since its previous turn. Reading them from DuckLake
(``table_changes`` on ``sessions``, then the ``service.joined`` events of those sessions) costs
~75 ms on a loaded 2-core machine — a third to a half of the time a turn holds the lock
(docs/scale-out.md). So each commit that writes session rows also writes them, as JSON, to
``roomscope_session_journal``, a table of the catalog's own PostgreSQL database, keyed by
the commit's tag (DuckLake's commit message), while the replica holds the lock, just before its
DuckLake COMMIT. The next turn of another replica reads them with one indexed query: the
journal rows whose tag is the commit message of a snapshot after its last turn.

The journal is only a shortcut; DuckLake stays the truth:

- a journal row whose commit did not land (COMMIT failed, the replica died) has no snapshot
  with its tag, and is never read;
- a snapshot after the last turn that inserted session rows (DuckLake's ``changes_made``) and
  has no journal row — a collector of an older version, ``roomscope migrate``, a test's own
  statements — makes :func:`read` answer None, and the caller reads ``table_changes`` instead;
- rows older than ``KEEP_SECONDS`` are deleted now and then; a replica that has not taken a
  turn for that long (its turns come at least every sweep interval while it runs) finds them
  missing and reads ``table_changes`` the same way.
"""

from __future__ import annotations

import contextlib
import json
import time

import psycopg

from .session_rows import SessionPlan, SessionState, session_row

JOURNAL = "roomscope_session_journal"
# Journal rows older than this are deleted (see the module). A running replica takes a turn at
# least every sessions.sweep_interval (5 s), and the lake's snapshots expire after as long.
KEEP_SECONDS = 600
PRUNE_EVERY = 100  # journal writes between two deletions of old rows

CREATE = [
    # states: JSON as text (jsonb refuses the \u0000 a hostile attribute value may hold).
    f"CREATE TABLE IF NOT EXISTS {JOURNAL} (tag text PRIMARY KEY,"
    " written timestamptz NOT NULL DEFAULT now(), states text NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {JOURNAL}_written ON {JOURNAL} (written)",
]
_INSERT = f"INSERT INTO {JOURNAL} (tag, states) VALUES (%s, %s)"
_PRUNE = f"DELETE FROM {JOURNAL} WHERE written < now() - %s::interval"

# Other authors' snapshots in (after, upto] that inserted session rows (into a data file or
# inlined in the catalog), with their journal rows where there is one, oldest first.
_READ = f"""
SELECT c.snapshot_id, j.states
FROM ducklake_snapshot_changes c LEFT JOIN {JOURNAL} j ON j.tag = c.commit_message
WHERE c.snapshot_id > %(after)s AND c.snapshot_id <= %(upto)s
  AND c.author IS DISTINCT FROM %(me)s
  AND c.changes_made ~ ('(^|,)(inserted_into_table|inlined_insert):'
        || (SELECT max(table_id) FROM ducklake_table
            WHERE table_name = 'sessions' AND end_snapshot IS NULL) || '(,|$)')
ORDER BY c.snapshot_id
"""


def written_states(plan: SessionPlan) -> list[SessionState]:
    """The session rows a plan writes: its new sessions, and its updates when it flushes."""
    updates = plan.updates if plan.flushes else {}
    return [s for sid, s in plan.states.items() if sid in plan.created] + list(updates.values())


def _encode(states: list[SessionState]) -> str:
    return json.dumps([[*session_row(s), list(s.joined)] for s in states])


def _decode(row: list, now: int) -> SessionState:
    *fields, services, joined = row
    return SessionState(*fields, services=tuple(services), joined=tuple(joined), last_arrival=now)


class SessionJournal:
    """The journal, on the connection of the replica's session lock (autocommit)."""

    def __init__(self) -> None:
        self._writes = 0
        self._ready = False  # the table is known to exist

    def _ensure(self, con: psycopg.Connection) -> None:
        if not self._ready:
            # UniqueViolation: another replica made it at the same moment.
            for statement in CREATE:
                with contextlib.suppress(psycopg.errors.UniqueViolation):
                    con.execute(statement)
            self._ready = True

    def write(self, con: psycopg.Connection, tag: str, states: list[SessionState]) -> None:
        """Record the session rows of the commit tagged ``tag`` (before its COMMIT)."""
        self._ensure(con)
        con.execute(_INSERT, [tag, _encode(states)])
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            con.execute(_PRUNE, [f"{KEEP_SECONDS} seconds"])

    def read(
        self, con: psycopg.Connection, me: str, after: int, upto: int
    ) -> list[SessionState] | None:
        """The session rows other authors' snapshots ``after`` + 1 … ``upto`` left (each
        session's latest), or None when one of those snapshots has no journal row."""
        self._ensure(con)
        rows = con.execute(_READ, {"after": after, "upto": upto, "me": me}).fetchall()
        if any(states is None for _, states in rows):
            return None
        now = time.time_ns()
        latest: dict[str, SessionState] = {}
        for _, states in rows:
            for row in json.loads(states):
                latest[row[0]] = _decode(row, now)
        return list(latest.values())
