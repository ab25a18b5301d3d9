"""roomscope's records in the shapes MeshAgent's own client reads (SPEC 13).

Each function composes :class:`query.library.reader.Reader` reads (the one query path of the
CLI, the API and the console) and renames their fields to what ``meshagent session ...``
(PyPI ``meshagent-cli``) parses: ``RoomSession`` for sessions, ``Room``, session events with
log records as ``otel.log``, spans and metric points. What roomscope knows better stays in
the records (when a session ended, whether it was inferred, its error count, error spans);
what only MeshAgent's cloud knows (participants, agent ids) is null.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import NotFound
from .filters import MAX_LIMIT, LogFilter, MetricFilter, SessionFilter, SpanFilter
from .reader import Reader, Result
from .records import parse_ts

Record = dict[str, Any]

DEFAULT_SESSIONS = 25  # MeshAgent's own default for GET .../sessions


def session_record(s: Record) -> Record:
    """A roomscope session as a MeshAgent ``RoomSession``, plus roomscope's own fields."""
    extra = {k: v for k, v in s.items() if k not in ("session_id", "room", "started_at")}
    return {
        "id": s["session_id"],
        "room_id": s["room"],  # a room's id is its name
        "room_name": s["room"] if s["room"] is not None else "",
        "created_at": s["started_at"],
        "is_active": s["ended_at"] is None,
        "participants": None,
        "kind": "room",
        "agent_id": None,
        "agent_name": None,
        **extra,
    }


def sessions(reader: Reader, *, limit: int | None, room_id: str | None) -> Result:
    """``GET /accounts/projects/{p}/sessions``: newest first, of one room when ``room_id``."""
    f = SessionFilter(room=room_id, limit=limit or DEFAULT_SESSIONS)
    return {"sessions": [session_record(s) for s in reader.sessions(f)["sessions"]]}


def room(reader: Reader, name: str) -> Result:
    """``GET /accounts/projects/{p}/rooms/{name}``: a MeshAgent ``Room`` (id = name), with
    roomscope's session counts and last activity; NotFound when no session has that room."""
    for r in reader.rooms()["rooms"]:
        if r["room"] == name:
            counts = {k: v for k, v in r.items() if k not in ("project", "room")}
            return {
                "id": name,
                "name": name,
                "metadata": {},
                "annotations": {},
                "enabled": True,
                **counts,
            }
    raise NotFound(f"no room {name!r}")


# Where an event sorts among others of the same time (as in the session timeline).
_ORDER = {"session.started": 0, "otel.log": 2, "span.error": 3, "session.ended": 4}


def _log_event(log: Record) -> Record:
    data = {
        "body": log["body"],
        "severity_text": log["severity_text"],
        "severity_number": log["severity_number"],
        "scope_name": log["scope_name"],
        "service_name": log["service_name"],
        "event_name": log["event_name"],
        "trace_id": log["trace_id"],
        "span_id": log["span_id"],
        "log_attributes": log["attributes"],
        "resource_attributes": log["resource_attributes"],
    }
    return {"type": "otel.log", "data": data, "created_at": log["time"]}


def _timeline_event(row: Record) -> Record:
    if row["type"] == "span.error":
        data: Any = {
            "span": row["message"],
            "status_code": row["severity_text"],
            "service_name": row["service_name"],
            "trace_id": row["trace_id"],
            "span_id": row["span_id"],
        }
    else:
        try:
            data = json.loads(row["message"]) if row["message"] is not None else {}
        except ValueError:
            data = {"message": row["message"]}
    return {"type": row["type"], "data": data, "created_at": row["time"]}


def events(reader: Reader, session_id: str) -> Result:
    """``GET .../sessions/{id}/events``: lifecycle events, error spans and every log record
    (``otel.log``, with its attributes) in time order."""
    timeline = reader.session_events(session_id)["events"]
    found = [_timeline_event(row) for row in timeline if row["type"] != "log"]
    found += [_log_event(log) for log in reader.session_logs(session_id, LogFilter())["logs"]]
    found.sort(key=lambda e: (parse_ts(e["created_at"]), _ORDER.get(e["type"], 1)))
    return {"events": found}


def span_record(s: Record) -> Record:
    renamed = {"start_time", "duration_ns", "attributes", "parent_span_id"}
    return {
        "trace_id": s["trace_id"],
        "span_id": s["span_id"],
        "parent_span_id": s["parent_span_id"] or None,
        "span_name": s["name"],
        "created_at": s["start_time"],
        "duration": s["duration_ns"],
        "span_attributes": s["attributes"],
        **{k: v for k, v in s.items() if k not in renamed and k not in ("trace_id", "span_id")},
    }


def spans(reader: Reader, session_id: str) -> Result:
    """``GET .../sessions/{id}/spans``: every span of the session, in trace order."""
    found = reader.session_spans(session_id, SpanFilter())["spans"]
    return {"spans": [span_record(s) for s in found]}


def metric_record(m: Record) -> Record:
    renamed = {"type", "unit", "attributes", "time", "start_time"}
    return {
        "kind": m["type"],
        "metric_name": m["name"],
        "metric_unit": m["unit"],
        "created_at": m["start_time"] or m["time"],
        "ended_at": m["time"],
        "metric_attributes": m["attributes"],
        **{k: v for k, v in m.items() if k not in renamed},
    }


def metrics(reader: Reader, session_id: str) -> Result:
    """``GET .../sessions/{id}/metrics``: every metric point of the session, by name and time."""
    points = reader.session_metrics(session_id, MetricFilter(limit=MAX_LIMIT))["metrics"]
    return {"metrics": [metric_record(m) for m in points]}
