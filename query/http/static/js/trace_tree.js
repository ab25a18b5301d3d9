// Traces as trees for the waterfall: spans laid out depth first under their parents (one pass),
// the rows left visible when subtrees are collapsed, and each trace's critical path.
import { tsMs } from "./util.js";

// The compact /waterfall answer -> span objects (start in epoch ms, sub-ms kept).
export function fromColumns({ base_time, columns, coded = [], strings = [], rows }) {
  const base = tsMs(base_time);
  const idx = Object.fromEntries(columns.map((c, i) => [c, i]));
  const decode = coded.map((c) => idx[c]);
  for (const r of rows) for (const i of decode) if (r[i] !== null) r[i] = strings[r[i]];
  return rows.map((r) => ({
    trace_id: r[idx.trace_id], span_id: r[idx.span_id], parent_span_id: r[idx.parent_span_id], name: r[idx.name],
    service_name: r[idx.service_name], kind: r[idx.kind], status_code: r[idx.status_code],
    duration_ns: r[idx.duration_ns], _start: base + r[idx.start_ns] / 1e6,
  }));
}

// spans -> rows, depth first: [{kind:"trace", trace_id, count, t0, t1, errors, root},
// {kind:"span", span, depth, t0, t1, kids: [span rows], parent: span row | null, end}...].
// A row's descendants are the rows after it up to `end` (exclusive); `pos` is its own index.
export function layout(spans) {
  const byTrace = new Map();
  for (const s of spans) {
    let list = byTrace.get(s.trace_id);
    if (!list) byTrace.set(s.trace_id, (list = []));
    list.push(s);
  }
  const traces = [];
  for (const [traceId, members] of byTrace) {
    const ids = new Set(members.map((s) => s.span_id));
    const kids = new Map();
    let t0 = Infinity, t1 = -Infinity, errors = 0;
    for (const s of members) {
      if (s._start === undefined) s._start = tsMs(s.start_time);
      s._end = s._start + (s.duration_ns || 0) / 1e6;
      if (s._start < t0) t0 = s._start;
      if (s._end > t1) t1 = s._end;
      if (s.status_code === "ERROR") errors++;
      const parent = ids.has(s.parent_span_id) ? s.parent_span_id : null;
      let list = kids.get(parent);
      if (!list) kids.set(parent, (list = []));
      list.push(s);
    }
    const order = (a, b) => a._start - b._start || (a.span_id < b.span_id ? -1 : 1);
    for (const list of kids.values()) list.sort(order);
    const rows = [];
    const open = []; // the rows whose subtree is still being laid out
    const stack = (kids.get(null) || []).slice().reverse().map((s) => [0, s, null]);
    while (stack.length) {
      const [depth, s, parent] = stack.pop();
      while (open.length > depth) open.pop().end = rows.length;
      const row = { kind: "span", span: s, depth, t0, t1, kids: [], parent };
      if (parent) parent.kids.push(row);
      rows.push(row);
      open.push(row);
      const children = kids.get(s.span_id);
      if (children) for (let i = children.length - 1; i >= 0; i--) stack.push([depth + 1, children[i], row]);
    }
    for (const r of open) r.end = rows.length;
    traces.push({ head: { kind: "trace", trace_id: traceId, count: members.length, t0, t1, errors, root: rows[0]?.span }, rows });
  }
  traces.sort((a, b) => a.head.t0 - b.head.t0);
  const out = [];
  for (const t of traces) {
    const offset = out.length + 1;
    t.rows.forEach((r, i) => {
      r.end += offset;
      r.pos = offset + i;
    });
    t.head.end = offset + t.rows.length;
    t.head.pos = offset - 1;
    out.push(t.head, ...t.rows);
  }
  return out;
}

// The rows shown: every row but the descendants of collapsed ones (collapsed: a Set of span ids,
// or trace ids for a whole trace).
export function visibleRows(all, collapsed) {
  if (!collapsed.size) return all;
  const out = [];
  for (let i = 0; i < all.length; ) {
    const r = all[i];
    out.push(r);
    const key = r.kind === "trace" ? r.trace_id : r.span.span_id;
    i = collapsed.has(key) ? r.end : i + 1;
  }
  return out;
}

// A trace's critical path (span ids): from the root, the child that finished last, then the
// child that finished last before that one started, and so on, each followed into its children.
export function criticalPath(rootRow) {
  const path = new Set();
  const walk = (row) => {
    path.add(row.span.span_id);
    let until = row.span._end;
    const kids = row.kids.slice().sort((a, b) => b.span._end - a.span._end);
    for (const k of kids) {
      if (k.span._end <= until + 1e-6) {
        walk(k);
        until = k.span._start;
      }
    }
  };
  if (rootRow) walk(rootRow);
  return path;
}
