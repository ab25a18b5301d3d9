"""ExportLogsServiceRequest → an Arrow table of ``log_data`` (each record's resource by id, the
resources themselves in ``side["resources"]``, as for spans)."""

from __future__ import annotations

import pyarrow as pa

from .attributes import attr_dict, body_text
from .columns import MAX_TS, Decoded, MapColumn, id_hex, resource_rows
from .store import ARROW_SCHEMAS
from .tagging import Tagger

SCHEMA = ARROW_SCHEMAS["logs"]


def flatten_logs(req, tagger: Tagger, received_ns: int) -> Decoded:
    tag_keys = tagger.all_keys
    cols: dict[str, list] = {f.name: [] for f in SCHEMA}
    attrs = MapColumn()
    res_attrs = MapColumn()  # one row per resource
    ctx: list[int] = []  # each record's resource
    out = Decoded("logs", pa.table({}))
    for r, rl in enumerate(req.resource_logs):
        rattrs = attr_dict(rl.resource.attributes)
        res_attrs.add_dict(rattrs)
        rtags = tagger.resource_tags(rattrs)
        service = rattrs.get("service.name")
        for sl in rl.scope_logs:
            scope = sl.scope
            for lr in sl.log_records:
                try:
                    tid = id_hex(lr.trace_id, 16, "trace_id", False)
                    sid = id_hex(lr.span_id, 8, "span_id", False)
                    observed = lr.observed_time_unix_nano or received_ns
                    t = lr.time_unix_nano or observed
                    if t > MAX_TS or observed > MAX_TS:
                        raise ValueError("timestamp is beyond the year 2262")
                    own = attr_dict(lr.attributes)
                    body = body_text(lr.body) if lr.HasField("body") else None
                except ValueError as exc:
                    out.reject(f"log record: {exc}")
                    continue
                tags = tagger.record_tags(own, rtags) if tag_keys.intersection(own) else rtags
                cols["project"].append(tags.project)
                cols["room"].append(tags.room)
                cols["session_id"].append(tags.session)
                cols["time"].append(t)
                cols["observed_time"].append(observed)
                cols["severity_number"].append(lr.severity_number)
                cols["severity_text"].append(lr.severity_text or None)
                cols["body"].append(body)
                cols["trace_id"].append(tid)
                cols["span_id"].append(sid)
                cols["flags"].append(lr.flags)
                cols["service_name"].append(service)
                cols["scope_name"].append(scope.name or None)
                cols["scope_version"].append(scope.version or None)
                cols["event_name"].append(lr.event_name or None)
                attrs.add_dict(own)
                ctx.append(r)
                cols["dropped_attributes_count"].append(lr.dropped_attributes_count)
    n = len(cols["time"])
    cols["received_at"] = [received_ns] * n
    resource_ids, out.side["resources"] = resource_rows(
        res_attrs.array(), pa.array(ctx, pa.int32())
    )
    arrays = []
    for f in SCHEMA:
        if f.name == "attributes":
            arrays.append(attrs.array())
        elif f.name == "resource_id":
            arrays.append(resource_ids)
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    out.table = pa.Table.from_arrays(arrays, schema=SCHEMA)
    return out
