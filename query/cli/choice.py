"""Which session a ``session traces|logs|metrics`` command reads: the SESSION_ID given, else
the newest one of ``--room``/``--project`` (:func:`query.library.reader.newest_session`),
named on stderr so that nobody mistakes an empty answer for the room's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..library.reader import newest_session
from .output import OutputFormat, emit
from .source import Source

NEWEST_RULE = (
    "No SESSION_ID: the newest session (latest start) of --room, of --project if given, else"
    " of the project most recently active in the room (without --room: anywhere); table output"
    " names it on stderr. No such session: an empty result (exit 0)."
)


def session_choice(fn: Callable[..., Any]) -> Callable[..., Any]:
    """[SESSION_ID], --room, --project: which session a ``session ...`` command reads."""
    fn = click.option("--project", help="With no SESSION_ID: the newest session of this project.")(
        fn
    )
    fn = click.option("--room", help="With no SESSION_ID: the newest session of this room.")(fn)
    return click.argument("session_id", required=False)(fn)


def pick_session(
    src: Source,
    session_id: str | None,
    room: str | None,
    project: str | None,
    output: OutputFormat,
    key: str,
) -> str | None:
    """The session id given, else the one :func:`newest_session` means, named on stderr (table
    output). None: there is none, and the empty result (``key``: its records) is written."""
    if session_id is not None:
        return session_id
    found = newest_session(src, room, project)
    if found is None:
        if output is OutputFormat.TABLE:
            click.echo(f"no sessions found{_of(room, project)}", err=True)
        else:
            emit(output, {"session_id": None, key: [], "next": None}, key, [])
        return None
    if output is OutputFormat.TABLE:
        of = _of(room, found["project"]).replace(" in ", " of ", 1)
        click.echo(f"session {found['session_id']} (newest{of})", err=True)
    return found["session_id"]


def _of(room: str | None, project: str | None) -> str:
    """`` in room R, project P`` (the parts given)."""
    parts = [f"{k} {v}" for k, v in (("room", room), ("project", project)) if v is not None]
    return " in " + ", ".join(parts) if parts else ""
