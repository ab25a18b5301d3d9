"""ExportTraceServiceRequest → an Arrow table of the ``spans`` table (the ingest hot path).

Written for speed: one pass over the message, plain lists per column, resource- and scope-level
columns built once per scope and spread with ``take``. A span with an invalid id or timestamp is
rejected alone (partial success); the others are kept.
"""

from __future__ import annotations

import pyarrow as pa

from .attributes import attr_dict, json_attrs, value_text
from .columns import (
    MAX_TS,
    Decoded,
    MapColumn,
    id_hex,
    resource_rows,
    sparse_list,
    split_attributes,
    struct_by_name,
    table_by_name,
    trace_index_rows,
)
from .store import ARROW_SCHEMAS
from .tagging import Tagger

SCHEMA = ARROW_SCHEMAS["spans"]
KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS = ("UNSET", "OK", "ERROR")
_ZERO16 = bytes(16)
_ZERO8 = bytes(8)
_EVENT_TYPE = SCHEMA.field("events").type.value_type
_LINK_TYPE = SCHEMA.field("links").type.value_type
# Arrow type of each column and struct field, by name.
_TYPES = {f.name: f.type for f in SCHEMA}
_EVENT_TYPES = {f.name: f.type for f in _EVENT_TYPE}
_LINK_TYPES = {f.name: f.type for f in _LINK_TYPE}


def _arrays(lists: dict[str, list], types: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    """Python lists by column name → Arrow arrays of those columns' types."""
    return {column: pa.array(values, types[column]) for column, values in lists.items()}


def _dedupe_tail(keys: list[str], values: list[str | None], first: int) -> None:
    row = dict(zip(keys[first:], values[first:], strict=True))
    del keys[first:]
    del values[first:]
    keys.extend(row)
    values.extend(row.values())


# The links struct's fields that _links makes (besides its attributes map), by name.
_LINK_VALUES = ("trace_id", "span_id", "trace_state", "dropped_attributes_count", "flags")


def _links(sp) -> list[dict]:
    """The span's links as rows keyed by the links struct's field names (ValueError for an
    invalid id: the span is rejected before any of its columns is appended to)."""
    return [
        {
            "trace_id": id_hex(ln.trace_id, 16, "link trace_id", True),
            "span_id": id_hex(ln.span_id, 8, "link span_id", True),
            "trace_state": ln.trace_state or None,
            "attributes": attr_dict(ln.attributes),
            "dropped_attributes_count": ln.dropped_attributes_count,
            "flags": ln.flags,
        }
        for ln in sp.links
    ]


def flatten_spans(req, tagger: Tagger, received_ns: int) -> Decoded:
    tag_keys = tagger.all_keys
    # Per resource×scope context, spread to spans by index.
    ctx_res = MapColumn()
    ctx_scope_attrs: list[str | None] = []
    ctx_service: list[str | None] = []
    ctx_scope_name: list[str | None] = []
    ctx_scope_version: list[str | None] = []
    ctx_idx: list[int] = []

    project: list[str] = []
    room: list[str | None] = []
    session: list[str | None] = []
    trace_id: list[str] = []
    span_id: list[str] = []
    parent: list[str | None] = []
    trace_state: list[str | None] = []
    name: list[str] = []
    kind: list[str] = []
    start: list[int] = []
    duration: list[int] = []
    status_code: list[str] = []
    status_message: list[str | None] = []
    flags: list[int] = []
    dropped_attrs: list[int] = []
    dropped_events: list[int] = []
    dropped_links: list[int] = []
    attrs = MapColumn()
    a_keys = attrs.keys
    a_vals = attrs.values
    a_offs = attrs.offsets

    ev_offsets = [0]
    ev_time: list[int] = []
    ev_name: list[str] = []
    ev_attrs = MapColumn()
    ev_dropped: list[int] = []
    ln_offsets = [0]
    ln_rows: list[dict] = []

    out = Decoded("spans", pa.table({}))
    n_kinds = len(KINDS)
    n_status = len(STATUS)

    for rs in req.resource_spans:
        rattrs = attr_dict(rs.resource.attributes)
        rtags = tagger.resource_tags(rattrs)
        r_project, r_room, r_session = rtags.project, rtags.room, rtags.session
        service = rattrs.get("service.name")
        for ss in rs.scope_spans:
            ci = len(ctx_service)
            ctx_res.add_dict(rattrs)
            scope = ss.scope
            ctx_scope_attrs.append(json_attrs(scope.attributes))
            ctx_service.append(service)
            ctx_scope_name.append(scope.name or None)
            ctx_scope_version.append(scope.version or None)
            for sp in ss.spans:
                try:
                    tid = sp.trace_id
                    sid = sp.span_id
                    if len(tid) != 16 or tid == _ZERO16:
                        id_hex(tid, 16, "trace_id", True)
                    if len(sid) != 8 or sid == _ZERO8:
                        id_hex(sid, 8, "span_id", True)
                    pid = sp.parent_span_id
                    pid_hex = id_hex(pid, 8, "parent_span_id", False) if pid else None
                    st = sp.start_time_unix_nano or received_ns
                    et = sp.end_time_unix_nano or st
                    if st > MAX_TS or et > MAX_TS:
                        raise ValueError("timestamp is beyond the year 2262")
                    links = _links(sp) if sp.links else ()
                except ValueError as exc:
                    out.reject(f"span {sp.name!r}: {exc}")
                    continue

                ctx_idx.append(ci)
                trace_id.append(tid.hex())
                span_id.append(sid.hex())
                parent.append(pid_hex)
                trace_state.append(sp.trace_state or None)
                name.append(sp.name)
                k = sp.kind
                kind.append(KINDS[k] if 0 <= k < n_kinds else str(k))
                start.append(st)
                duration.append(et - st)
                status = sp.status
                c = status.code
                status_code.append(STATUS[c] if 0 <= c < n_status else str(c))
                status_message.append(status.message or None)
                flags.append(sp.flags)
                dropped_attrs.append(sp.dropped_attributes_count)
                dropped_events.append(sp.dropped_events_count)
                dropped_links.append(sp.dropped_links_count)

                first = len(a_keys)
                tagged = False
                for kv in sp.attributes:
                    key = kv.key
                    v = kv.value
                    s = v.string_value  # most values are strings: skip WhichOneof for them
                    a_keys.append(key)
                    a_vals.append(s if s else value_text(v))
                    if key in tag_keys:
                        tagged = True
                count = len(a_keys) - first
                if count > 1 and len(set(a_keys[first:])) != count:
                    _dedupe_tail(a_keys, a_vals, first)  # MAP keys must be unique; last wins
                a_offs.append(len(a_keys))
                if tagged:
                    own = dict(zip(a_keys[first:], a_vals[first:], strict=True))
                    t = tagger.record_tags(own, rtags)
                    project.append(t.project)
                    room.append(t.room)
                    session.append(t.session)
                else:
                    project.append(r_project)
                    room.append(r_room)
                    session.append(r_session)

                if sp.events:
                    for ev in sp.events:
                        ev_time.append(ev.time_unix_nano or st)
                        ev_name.append(ev.name)
                        ev_attrs.add_dict(attr_dict(ev.attributes))
                        ev_dropped.append(ev.dropped_attributes_count)
                ev_offsets.append(len(ev_time))
                if links:
                    ln_rows.extend(links)
                ln_offsets.append(len(ln_rows))

    n = len(trace_id)
    ctx = pa.array(ctx_idx, pa.int32())
    keysets, attr_values, keyset_rows = split_attributes(attrs.array())
    resource_ids, resources = resource_rows(ctx_res.array(), ctx)
    if any(t > MAX_TS for t in ev_time):
        ev_time = [min(t, MAX_TS) for t in ev_time]
    events = sparse_list(
        pa.array(ev_offsets, pa.int32()),
        struct_by_name(
            _arrays(
                {"time": ev_time, "name": ev_name, "dropped_attributes_count": ev_dropped},
                _EVENT_TYPES,
            )
            | {"attributes": ev_attrs.array()},
            _EVENT_TYPE,
            "span events",
        ),
    )
    ln_attrs = MapColumn()
    for row in ln_rows:
        ln_attrs.add_dict(row["attributes"])
    ln_lists = {f: [row[f] for row in ln_rows] for f in _LINK_VALUES}
    links_arr = sparse_list(
        pa.array(ln_offsets, pa.int32()),
        struct_by_name(
            _arrays(ln_lists, _LINK_TYPES) | {"attributes": ln_attrs.array()},
            _LINK_TYPE,
            "span links",
        ),
    )
    # Every column by its name in the schema (collector/store/schema.py); table_by_name puts
    # them in its order and fails on a column it has and this function does not make.
    per_span = {
        "project": project,
        "room": room,
        "session_id": session,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "trace_state": trace_state,
        "name": name,
        "kind": kind,
        "start_time": start,
        "duration_ns": duration,
        "status_code": status_code,
        "status_message": status_message,
        "flags": flags,
        "dropped_attributes_count": dropped_attrs,
        "dropped_events_count": dropped_events,
        "dropped_links_count": dropped_links,
    }
    per_context = {  # one value per resource × scope, spread to its spans
        "service_name": ctx_service,
        "scope_name": ctx_scope_name,
        "scope_version": ctx_scope_version,
        "scope_attributes": ctx_scope_attrs,
    }
    columns = _arrays(per_span, _TYPES)
    for column, array in _arrays(per_context, _TYPES).items():
        columns[column] = array.take(ctx)
    columns["attribute_keyset"] = keysets
    columns["attribute_values"] = attr_values
    columns["resource_id"] = resource_ids
    columns["events"] = events
    columns["links"] = links_arr
    columns["received_at"] = pa.array([received_ns] * n, _TYPES["received_at"])
    out.table = table_by_name(columns, SCHEMA, "flatten_spans")
    out.side["resources"] = resources
    out.side["attribute_keysets"] = keyset_rows
    out.side["trace_index"] = trace_index_rows(out.table)
    return out
