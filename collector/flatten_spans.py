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
    TS_TYPE,
    Decoded,
    MapColumn,
    id_hex,
    resource_rows,
    sparse_list,
    split_attributes,
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


def _dedupe_tail(keys: list[str], values: list[str | None], first: int) -> None:
    row = dict(zip(keys[first:], values[first:], strict=True))
    del keys[first:]
    del values[first:]
    keys.extend(row)
    values.extend(row.values())


def _links(sp) -> list[tuple]:
    out = []
    for ln in sp.links:
        out.append(
            (
                id_hex(ln.trace_id, 16, "link trace_id", True),
                id_hex(ln.span_id, 8, "link span_id", True),
                ln.trace_state or None,
                attr_dict(ln.attributes),
                ln.dropped_attributes_count,
                ln.flags,
            )
        )
    return out


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
    ln_rows: list[tuple] = []

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
        pa.StructArray.from_arrays(
            [
                pa.array(ev_time, TS_TYPE),
                pa.array(ev_name, pa.string()),
                ev_attrs.array(),
                pa.array(ev_dropped, pa.uint32()),
            ],
            fields=list(_EVENT_TYPE),
        ),
    )
    ln_cols = list(zip(*ln_rows, strict=True)) if ln_rows else [[]] * 6
    ln_attrs = MapColumn()
    for d in ln_cols[3]:
        ln_attrs.add_dict(d)
    links_arr = sparse_list(
        pa.array(ln_offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [
                pa.array(ln_cols[0], pa.string()),
                pa.array(ln_cols[1], pa.string()),
                pa.array(ln_cols[2], pa.string()),
                ln_attrs.array(),
                pa.array(ln_cols[4], pa.uint32()),
                pa.array(ln_cols[5], pa.uint32()),
            ],
            fields=list(_LINK_TYPE),
        ),
    )
    columns = [
        pa.array(project, pa.string()),
        pa.array(room, pa.string()),
        pa.array(session, pa.string()),
        pa.array(trace_id, pa.string()),
        pa.array(span_id, pa.string()),
        pa.array(parent, pa.string()),
        pa.array(trace_state, pa.string()),
        pa.array(name, pa.string()),
        pa.array(kind, pa.string()),
        pa.array(ctx_service, pa.string()).take(ctx),
        pa.array(ctx_scope_name, pa.string()).take(ctx),
        pa.array(ctx_scope_version, pa.string()).take(ctx),
        pa.array(start, TS_TYPE),
        pa.array(duration, pa.int64()),
        pa.array(status_code, pa.string()),
        pa.array(status_message, pa.string()),
        keysets,
        attr_values,
        resource_ids,
        events,
        links_arr,
        pa.array(flags, pa.uint32()),
        pa.array(dropped_attrs, pa.uint32()),
        pa.array(dropped_events, pa.uint32()),
        pa.array(dropped_links, pa.uint32()),
        pa.array(ctx_scope_attrs, pa.string()).take(ctx),
        pa.array([received_ns] * n, TS_TYPE),
    ]
    out.table = pa.Table.from_arrays(columns, schema=SCHEMA)
    out.side["resources"] = resources
    out.side["attribute_keysets"] = keyset_rows
    out.side["trace_index"] = trace_index_rows(out.table)
    return out
