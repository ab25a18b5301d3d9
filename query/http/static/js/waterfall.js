// Trace waterfall: spans nested under their parents on each trace's time axis, one pass to lay
// out, then only the visible rows are in the DOM (virtualized), so 5,000 spans render at once.
// The sticky header holds the time axis (nice ticks) of the trace at the top of the view; light
// grid lines run through each visible trace's rows at its own ticks.
import { h, tsMs, fmtNs, clock, kvTable } from "./util.js";
import { niceTicks, maxTicksFor } from "./axis.js";

const ROW = 22;
const OVERSCAN = 12;

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

// spans -> rows: [{kind:"trace", trace_id, count, t0, t1, errors}, {kind:"span", span, depth, t0, t1}...]
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
    const stack = (kids.get(null) || []).slice().reverse().map((s) => [0, s]);
    while (stack.length) {
      const [depth, s] = stack.pop();
      rows.push({ kind: "span", span: s, depth, t0, t1 });
      const children = kids.get(s.span_id);
      if (children) for (let i = children.length - 1; i >= 0; i--) stack.push([depth + 1, children[i]]);
    }
    traces.push({ head: { kind: "trace", trace_id: traceId, count: members.length, t0, t1, errors, root: rows[0]?.span }, rows });
  }
  traces.sort((a, b) => a.head.t0 - b.head.t0);
  const out = [];
  for (const t of traces) out.push(t.head, ...t.rows);
  return out;
}

export class Waterfall {
  constructor(container, spans, { onSelect, selected, maxHeight = 560 } = {}) {
    this.rows = layout(spans);
    this.onSelect = onSelect;
    this.selected = selected || null;
    this.heads = new Int32Array(this.rows.length); // row index -> its trace header's row index
    let head = 0;
    this.rows.forEach((r, i) => {
      if (r.kind === "trace") head = i;
      this.heads[i] = head;
      this.rows[head].end = i + 1;
    });
    this.scroll = h("div", { class: "wf-scroll", style: { maxHeight: `${maxHeight}px` } });
    this.inner = h("div", { class: "wf-inner", style: { height: `${this.rows.length * ROW}px` } });
    this.axis = h("div", { class: "wf-axis" });
    this.axisLabel = h("div", { class: "wf-label" }, "span");
    this.scroll.append(h("div", { class: "wf-head" }, this.axisLabel, this.axis), this.inner);
    this.el = h("div", { class: "waterfall", dataset: { rows: String(this.rows.length) } }, this.scroll);
    container.replaceChildren(this.el);
    this.axisHead = -1;
    this.first = -1;
    this.last = -1;
    this.scroll.addEventListener("scroll", () => this.draw(), { passive: true });
    this.inner.addEventListener("click", (e) => {
      const row = e.target.closest(".wf-row[data-span-id]");
      if (row) this.select(row.dataset.spanId);
    });
    this.draw(true);
    if (this.selected) this.reveal(this.selected);
    let width = this.axis.clientWidth;
    this.resizer = new ResizeObserver(() => { // ticks fit the width: redraw when it changes
      if (this.axis.clientWidth === width) return;
      width = this.axis.clientWidth;
      this.axisHead = -1;
      this.draw(true);
    });
    this.resizer.observe(this.axis);
  }

  // A waterfall drawn anew in its place (a followed session's new spans) lets go of this one.
  destroy() {
    this.resizer.disconnect();
  }

  select(spanId) {
    this.selected = spanId;
    const row = this.rows.find((r) => r.kind === "span" && r.span.span_id === spanId);
    this.draw(true);
    if (row && this.onSelect) this.onSelect(row.span);
  }

  reveal(spanId) {
    const i = this.rows.findIndex((r) => r.kind === "span" && r.span.span_id === spanId);
    if (i >= 0) {
      this.scroll.scrollTop = Math.max(0, i * ROW - 3 * ROW);
      this.select(spanId);
    }
  }

  draw(force = false) {
    const height = this.scroll.clientHeight || 560;
    const first = Math.max(0, Math.floor(this.scroll.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((this.scroll.scrollTop + height) / ROW) + OVERSCAN);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; ) { // grid lines first, so the rows paint over them
      const head = this.heads[i];
      frag.append(this.grid(head));
      i = this.rows[head].end;
    }
    for (let i = first; i < last; i++) frag.append(this.row(this.rows[i], i));
    this.inner.replaceChildren(frag);
    this.drawAxis();
  }

  // A trace's ticks, for the width the track has now (cached per trace and tick budget).
  ticks(head) {
    const r = this.rows[head];
    const max = maxTicksFor(this.axis.clientWidth);
    if (!r.ticks || r.ticksMax !== max) {
      const span = r.t1 - r.t0 || 1;
      r.ticks = niceTicks(span, max).map((t) => ({ ...t, pct: (t.t / span) * 100 }));
      r.ticksMax = max;
    }
    return r.ticks;
  }

  grid(head) {
    const r = this.rows[head];
    return h("div", { class: "wf-grid", style: { top: `${(head + 1) * ROW}px`, height: `${(r.end - head - 1) * ROW}px` } },
      this.ticks(head).slice(1).map((t) => h("div", { class: "wf-gridline", style: { left: `${t.pct}%` } })));
  }

  // The header's axis: the ticks of the trace whose rows are at the top of the view.
  drawAxis() {
    if (!this.rows.length) return;
    const top = Math.min(this.rows.length - 1, Math.floor(this.scroll.scrollTop / ROW));
    const head = this.heads[top];
    if (head === this.axisHead) return;
    this.axisHead = head;
    const r = this.rows[head];
    this.axis.dataset.traceId = r.trace_id;
    this.axis.title = `time from the start of trace ${r.trace_id} (${fmtNs((r.t1 - r.t0) * 1e6)})`;
    this.axisLabel.textContent = this.rows.length > r.end - head ? `span · axis: trace ${r.trace_id.slice(0, 8)}…` : "span";
    this.axis.replaceChildren(...this.ticks(head).map((t, i) =>
      h("span", { class: `wf-tick${i === 0 ? " first" : ""}`, style: { left: `${t.pct}%` }, dataset: { t: String(t.t) } }, t.label)));
  }

  row(r, i) {
    const top = `${i * ROW}px`;
    if (r.kind === "trace") {
      const name = r.root ? `${r.root.service_name || ""} ${r.root.name}` : "";
      return h("div", { class: "wf-trace", style: { top }, dataset: { traceId: r.trace_id } },
        h("a", { href: `#/trace/${r.trace_id}` }, `trace ${r.trace_id.slice(0, 12)}…`),
        h("span", {}, ` ${name} · ${r.count} spans · ${fmtNs((r.t1 - r.t0) * 1e6)}`),
        r.errors ? h("span", { class: "err-badge" }, `${r.errors} error${r.errors > 1 ? "s" : ""}`) : null);
    }
    const s = r.span;
    const span = r.t1 - r.t0 || 1;
    const left = ((s._start - r.t0) / span) * 100;
    const width = Math.max(((s._end - s._start) / span) * 100, 0.15);
    const err = s.status_code === "ERROR";
    const cls = `wf-row${err ? " error" : ""}${this.selected === s.span_id ? " selected" : ""}`;
    return h("div", { class: cls, style: { top }, title: `${s.name} ${fmtNs(s.duration_ns)} @ ${s.start_time ? clock(s.start_time) : new Date(s._start).toISOString().slice(11, 23)} UTC`, dataset: { spanId: s.span_id, depth: String(r.depth), name: s.name } },
      h("div", { class: "wf-label", style: { paddingLeft: `${6 + r.depth * 14}px` } },
        err ? h("span", { class: "err-dot", title: "error" }, "●") : null,
        h("span", { class: "wf-name" }, s.name), h("span", { class: "wf-svc" }, s.service_name || "")),
      h("div", { class: "wf-track" },
        h("div", { class: `wf-bar svc-${hash(s.service_name)}`, style: { left: `${left}%`, width: `${width}%` } }),
        left + width > 82
          ? h("span", { class: "wf-dur inside", style: { right: `${100 - left - width}%` } }, fmtNs(s.duration_ns))
          : h("span", { class: "wf-dur", style: { left: `${left + width}%` } }, fmtNs(s.duration_ns))));
  }
}

function hash(text) {
  let n = 0;
  for (const c of text || "") n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return n % 6;
}

export function spanDetail(s) {
  const rows = [
    ["span", s.name], ["service", s.service_name], ["kind", s.kind], ["status", `${s.status_code}${s.status_message ? ": " + s.status_message : ""}`],
    ["duration", fmtNs(s.duration_ns)], ["start", s.start_time], ["trace", s.trace_id], ["span id", s.span_id], ["parent", s.parent_span_id || "(root)"],
  ];
  return h("div", { class: "span-detail", dataset: { spanId: s.span_id } },
    h("h3", { class: s.status_code === "ERROR" ? "error-text" : "" }, s.name),
    h("table", { class: "kv" }, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v ?? "")))),
    h("h4", {}, "Attributes"), kvTable(s.attributes),
    h("h4", {}, `Events (${(s.events || []).length})`),
    (s.events || []).length
      ? h("ul", { class: "events" }, s.events.map((e) => h("li", {}, h("b", {}, e.name), ` @ ${clock(e.time)} `, h("code", {}, JSON.stringify(e.attributes || {})))))
      : h("p", { class: "muted" }, "none"),
    h("h4", {}, `Links (${(s.links || []).length})`),
    (s.links || []).length
      ? h("ul", { class: "links" }, s.links.map((l) => h("li", {}, h("a", { href: `#/trace/${l.trace_id}?span=${l.span_id}` }, `${l.trace_id.slice(0, 12)}… / ${l.span_id}`))))
      : h("p", { class: "muted" }, "none"),
    h("h4", {}, "Resource"), kvTable(s.resource_attributes));
}
