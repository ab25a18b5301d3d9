// Trace waterfall: spans nested under their parents on each trace's time axis, laid out in one
// pass (trace_tree.js), then only the visible rows are in the DOM (virtualized), so 5,000 spans
// render at once. The sticky header holds the time axis (nice ticks) of the trace at the top of
// the view; light grid lines run through each visible trace's rows at its own ticks.
// Subtrees collapse and expand, the time axis zooms (drag on it, or the buttons), find highlights
// the spans whose name or service holds a text, and a trace's critical path can be marked. It is
// an ARIA tree: arrow keys move through the rows, Left/Right collapse and expand, Enter opens a
// span (or, on a trace's header, the trace's page), Esc closes it.
import { h, fmtNs, clock, kvTable } from "./util.js";
import { niceTicks, rangeTicks, maxTicksFor } from "./axis.js";
import { layout, visibleRows, criticalPath, fromColumns } from "./trace_tree.js";
import { waterfallTools } from "./waterfall_tools.js";

export { fromColumns, layout };

const ROW = 22;
const OVERSCAN = 12;

export class Waterfall {
  constructor(container, spans, { onSelect, onClose, selected, maxHeight = 560 } = {}) {
    this.all = layout(spans);
    this.onSelect = onSelect;
    this.onClose = onClose;
    this.selected = selected || null;
    this.collapsed = new Set(); // span ids (or trace ids) whose subtree is hidden
    this.zoom = { from: 0, to: 1 }; // the part of each trace's time shown, as fractions
    this.matches = []; // rows of `all` that the find text matches
    this.matchIds = new Set();
    this.current = -1; // index into matches
    this.critical = null; // span ids on the critical paths, when shown
    this.focusIndex = 0;
    this.scroll = h("div", { class: "wf-scroll", style: { maxHeight: `${maxHeight}px` } });
    this.inner = h("div", { class: "wf-inner", role: "tree", "aria-label": "spans by trace (arrow keys move, Enter opens, Left/Right collapse and expand)" });
    this.axis = h("div", { class: "wf-axis", title: "drag to zoom into a time range" });
    this.axisLabel = h("div", { class: "wf-label" }, "span");
    this.scroll.append(h("div", { class: "wf-head" }, this.axisLabel, this.axis), this.inner);
    this.tools = waterfallTools(this);
    this.el = h("div", { class: "waterfall" }, this.tools.el, this.scroll);
    container.replaceChildren(this.el);
    this.axisHead = -1;
    this.first = -1;
    this.last = -1;
    this.scroll.addEventListener("scroll", () => this.draw(), { passive: true });
    this.inner.addEventListener("click", (e) => {
      const row = e.target.closest(".wf-row[data-span-id], .wf-trace");
      if (!row || e.target.closest("a")) return;
      this.focusIndex = Number(row.dataset.index);
      if (e.target.closest(".wf-toggle") || row.classList.contains("wf-trace")) this.toggle(this.rows[this.focusIndex]);
      else this.select(row.dataset.spanId);
    });
    this.inner.addEventListener("keydown", (e) => this.key(e));
    this.escape = (e) => {
      if (!this.el.isConnected) return document.removeEventListener("keydown", this.escape);
      if (e.key === "Escape" && this.selected && !e.target.closest("input, select, textarea, dialog")) this.close();
    };
    document.addEventListener("keydown", this.escape);
    this.refresh();
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

  // A waterfall no longer shown (its page left) lets go of its observer and its Esc key.
  destroy() {
    this.resizer.disconnect();
    document.removeEventListener("keydown", this.escape);
  }

  // New spans (a followed session's): laid out again in place; the selected span, the scroll,
  // the collapsed subtrees, the zoom, the find and the critical path stay.
  setSpans(spans) {
    const current = this.matches[this.current];
    this.all = layout(spans);
    if (this.matches.length || this.tools.input.value.trim()) {
      this.find(this.tools.input.value);
      if (current) this.current = this.matches.findIndex((r) => r.span.span_id === current.span.span_id);
    }
    if (this.critical) this.showCritical(true);
    this.refresh();
  }

  // The visible rows again (after a collapse or expand), then drawn.
  refresh() {
    this.rows = visibleRows(this.all, this.collapsed);
    this.heads = new Int32Array(this.rows.length); // row index -> its trace header's row index
    let head = 0;
    this.rows.forEach((r, i) => {
      r.at = i;
      if (r.kind === "trace") head = i;
      this.heads[i] = head;
      this.rows[head].shownEnd = i + 1;
    });
    this.inner.style.height = `${this.rows.length * ROW}px`;
    this.el.dataset.rows = String(this.rows.length);
    this.focusIndex = Math.min(this.focusIndex, Math.max(0, this.rows.length - 1));
    this.axisHead = -1;
    this.draw(true);
  }

  key(e) {
    const r = this.rows[this.focusIndex];
    if (!r) return;
    const page = Math.max(1, Math.floor(this.scroll.clientHeight / ROW) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, Home: -Infinity, End: Infinity };
    const key = r.kind === "trace" ? r.trace_id : r.span.span_id;
    const hasKids = r.kind === "trace" || r.kids.length > 0;
    if (e.key in moves) this.focusRow(this.focusIndex + moves[e.key]);
    else if (e.key === "ArrowRight" && hasKids && this.collapsed.has(key)) this.toggle(r);
    else if (e.key === "ArrowRight" && hasKids) this.focusRow(this.focusIndex + 1);
    else if (e.key === "ArrowLeft" && hasKids && !this.collapsed.has(key)) this.toggle(r);
    else if (e.key === "ArrowLeft" && r.kind === "span") this.focusRow(r.parent ? r.parent.at : this.heads[this.focusIndex]);
    else if ((e.key === "Enter" || e.key === " ") && r.kind === "span") this.select(r.span.span_id);
    else if (e.key === "Enter" && r.kind === "trace") this.inner.querySelector(`[data-index="${this.focusIndex}"] a`)?.click();
    else if (e.key === " " && r.kind === "trace") this.toggle(r);
    else return;
    e.preventDefault();
  }

  // Move the keyboard focus to visible row i (scrolled into view).
  focusRow(i) {
    this.focusIndex = Math.max(0, Math.min(this.rows.length - 1, i));
    const top = this.focusIndex * ROW, view = this.scroll.clientHeight - ROW; // the sticky header
    if (top < this.scroll.scrollTop) this.scroll.scrollTop = top;
    else if (top + ROW > this.scroll.scrollTop + view) this.scroll.scrollTop = top + ROW - view;
    this.draw(true);
    this.inner.querySelector(`[data-index="${this.focusIndex}"]`)?.focus({ preventScroll: true });
  }

  toggle(r) {
    const key = r.kind === "trace" ? r.trace_id : r.span.span_id;
    if (r.kind === "span" && !r.kids.length) return;
    if (this.collapsed.has(key)) this.collapsed.delete(key);
    else this.collapsed.add(key);
    const focused = this.inner.contains(document.activeElement);
    this.refresh();
    this.focusIndex = r.at;
    if (focused) this.focusRow(r.at);
  }

  // Expand every collapsed ancestor (and trace) of a row of `all`, so that it is shown.
  expandTo(row) {
    let changed = false;
    for (let p = row.parent; p; p = p.parent) changed = this.collapsed.delete(p.span.span_id) || changed;
    changed = this.collapsed.delete(row.span.trace_id) || changed;
    if (changed) this.refresh();
  }

  collapseAll(on) {
    this.collapsed = new Set(on ? this.all.filter((r) => r.kind === "span" && r.kids.length).map((r) => r.span.span_id) : []);
    this.refresh();
  }

  select(spanId) {
    this.selected = spanId;
    const row = this.all.find((r) => r.kind === "span" && r.span.span_id === spanId);
    if (row) {
      this.expandTo(row);
      this.focusIndex = row.at;
    }
    this.draw(true);
    if (row && this.onSelect) this.onSelect(row.span);
  }

  // Esc: the span panel closes; the focus goes back to the span's row.
  close() {
    const row = this.all.find((r) => r.kind === "span" && r.span.span_id === this.selected);
    this.selected = null;
    if (this.onClose) this.onClose();
    if (row && row.at !== undefined && this.rows[row.at] === row) this.focusRow(row.at);
    else this.draw(true);
  }

  reveal(spanId) {
    const row = this.all.find((r) => r.kind === "span" && r.span.span_id === spanId);
    if (!row) return;
    this.expandTo(row);
    this.scroll.scrollTop = Math.max(0, row.at * ROW - 3 * ROW);
    this.select(spanId);
  }

  setZoom(from, to) {
    const min = 1e-4;
    from = Math.max(0, Math.min(from, 1 - min));
    to = Math.min(1, Math.max(to, from + min));
    this.zoom = { from, to };
    this.el.dataset.zoom = from === 0 && to === 1 ? "" : `${from.toFixed(4)}-${to.toFixed(4)}`;
    for (const r of this.all) if (r.kind === "trace") r.ticks = null;
    this.axisHead = -1;
    this.tools.zoomChanged();
    this.draw(true);
  }

  // Find: the span rows whose name or service holds the text (any case); the first is current.
  find(text) {
    const q = text.trim().toLowerCase();
    this.matches = q ? this.all.filter((r) => r.kind === "span" && (r.span.name.toLowerCase().includes(q) || (r.span.service_name || "").toLowerCase().includes(q))) : [];
    this.matchIds = new Set(this.matches.map((r) => r.span.span_id));
    this.el.dataset.matches = String(this.matches.length);
    this.current = -1;
    this.draw(true);
    return this.matches.length;
  }

  // The next (+1) or previous (-1) match, shown (its ancestors expanded) and focused.
  step(dir) {
    if (!this.matches.length) return;
    this.current = (this.current + dir + this.matches.length) % this.matches.length;
    const row = this.matches[this.current];
    this.expandTo(row);
    this.focusIndex = row.at;
    this.scroll.scrollTop = Math.max(0, row.at * ROW - 3 * ROW);
    this.draw(true);
  }

  showCritical(on) {
    this.critical = on ? new Set() : null;
    if (on) for (const r of this.all) if (r.kind === "trace") for (const id of criticalPath(this.all[r.pos + 1])) this.critical.add(id);
    this.el.dataset.critical = on ? String(this.critical.size) : "";
    this.draw(true);
  }

  draw(force = false) {
    const height = this.scroll.clientHeight || 560;
    const first = Math.max(0, Math.floor(this.scroll.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((this.scroll.scrollTop + height) / ROW) + OVERSCAN);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const refocus = this.inner.contains(document.activeElement);
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; ) { // grid lines first, so the rows paint over them
      const head = this.heads[i];
      frag.append(this.grid(head));
      i = this.rows[head].shownEnd;
    }
    let tabbable = false;
    for (let i = first; i < last; i++) {
      const el = this.row(this.rows[i], i);
      if (i === this.focusIndex) {
        el.tabIndex = 0;
        tabbable = true;
      }
      frag.append(el);
    }
    if (!tabbable && first < last) frag.querySelector("[data-index]").tabIndex = 0; // Tab always lands in the tree
    this.inner.replaceChildren(frag);
    if (refocus) this.inner.querySelector(`[data-index="${this.focusIndex}"]`)?.focus({ preventScroll: true });
    this.drawAxis();
  }

  // A trace's ticks, for the width the track has now and the zoom (cached per trace).
  ticks(head) {
    const r = this.rows[head];
    const max = maxTicksFor(this.axis.clientWidth);
    if (!r.ticks || r.ticksMax !== max) {
      const span = r.t1 - r.t0 || 1;
      const { from, to } = this.zoom;
      const a = from * span, b = to * span;
      const ticks = from === 0 && to === 1 ? niceTicks(span, max) : rangeTicks(a, b, max);
      r.ticks = ticks.map((t) => ({ ...t, pct: ((t.t - a) / (b - a)) * 100 }));
      r.ticksMax = max;
    }
    return r.ticks;
  }

  grid(head) {
    const r = this.rows[head];
    return h("div", { class: "wf-grid", style: { top: `${(head + 1) * ROW}px`, height: `${(r.shownEnd - head - 1) * ROW}px` } },
      this.ticks(head).filter((t) => t.pct > 0).map((t) => h("div", { class: "wf-gridline", style: { left: `${t.pct}%` } })));
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
    this.axis.title = `time from the start of trace ${r.trace_id} (${fmtNs((r.t1 - r.t0) * 1e6)}); drag to zoom`;
    this.axisLabel.textContent = this.rows.length > r.shownEnd - head ? `span · axis: trace ${r.trace_id.slice(0, 8)}…` : "span";
    this.axis.replaceChildren(...this.ticks(head).map((t, i) =>
      h("span", { class: `wf-tick${i === 0 && t.pct < 1 ? " first" : ""}`, style: { left: `${t.pct}%` }, dataset: { t: String(t.t) } }, t.label)));
  }

  row(r, i) {
    const top = `${i * ROW}px`;
    if (r.kind === "trace") {
      const name = r.root ? `${r.root.service_name || ""} ${r.root.name}` : "";
      const shut = this.collapsed.has(r.trace_id);
      return h("div", { class: "wf-trace", style: { top }, role: "treeitem", "aria-level": "1", "aria-expanded": String(!shut), tabindex: "-1", dataset: { traceId: r.trace_id, index: String(i) } },
        h("span", { class: "wf-toggle", "aria-hidden": "true" }, shut ? "▸" : "▾"),
        h("a", { href: `#/trace/${r.trace_id}`, tabindex: "-1" }, `trace ${r.trace_id.slice(0, 12)}…`),
        h("span", {}, ` ${name} · ${r.count} spans · ${fmtNs((r.t1 - r.t0) * 1e6)}`),
        r.errors ? h("span", { class: "err-badge" }, `${r.errors} error${r.errors > 1 ? "s" : ""}`) : null);
    }
    const s = r.span;
    const span = r.t1 - r.t0 || 1;
    const { from, to } = this.zoom;
    const f0 = (s._start - r.t0) / span, f1 = (s._end - r.t0) / span;
    const left = ((f0 - from) / (to - from)) * 100;
    const width = Math.max(((f1 - f0) / (to - from)) * 100, 0.15);
    const err = s.status_code === "ERROR";
    const shut = this.collapsed.has(s.span_id);
    const id = s.span_id;
    const cls = `wf-row${err ? " error" : ""}${this.selected === id ? " selected" : ""}${this.matchIds.has(id) ? " match" : ""}`
      + `${this.current >= 0 && this.matches[this.current] === r ? " current" : ""}${this.critical && this.critical.has(id) ? " critical" : ""}`;
    const dur = fmtNs(s.duration_ns);
    return h("div", {
      class: cls, style: { top }, role: "treeitem", tabindex: "-1", "aria-level": String(r.depth + 2), "aria-selected": String(this.selected === id),
      "aria-expanded": r.kids.length ? String(!shut) : null, "aria-label": `${s.name}${s.service_name ? " · " + s.service_name : ""} · ${dur}${err ? " · error" : ""}`,
      title: `${s.name} ${dur} @ ${s.start_time ? clock(s.start_time) : new Date(s._start).toISOString().slice(11, 23)} UTC`, dataset: { spanId: id, depth: String(r.depth), name: s.name, index: String(i) },
    },
      h("div", { class: "wf-label", style: { paddingLeft: `calc(2px + var(--wf-indent) * ${r.depth})` } },
        h("span", { class: `wf-toggle${r.kids.length ? "" : " none"}`, "aria-hidden": "true" }, shut ? "▸" : "▾"),
        err ? h("span", { class: "err-dot", "aria-hidden": "true" }, "●") : null,
        h("span", { class: "wf-name" }, s.name), h("span", { class: "wf-svc" }, s.service_name || ""),
        shut ? h("span", { class: "wf-hidden" }, `+${r.end - r.pos - 1}`) : null),
      h("div", { class: "wf-track" },
        h("div", { class: `wf-bar svc-${hash(s.service_name)}`, style: { left: `${left}%`, width: `${width}%` } }),
        durLabel(left, width, dur)));
  }
}

// The duration next to its bar, outside it: after the bar, or before it when the bar ends near
// the right edge; inside (on a chip) only when the bar fills the track.
function durLabel(left, width, text) {
  if (left + width < 0 || left > 100) return null;
  if (left + width <= 82) return h("span", { class: "wf-dur", style: { left: `${Math.max(0, left + width)}%` } }, text);
  if (left >= 18) return h("span", { class: "wf-dur before", style: { right: `${100 - left}%` } }, text);
  return h("span", { class: "wf-dur inside", style: { right: `${Math.max(0, 100 - left - width)}%` } }, text);
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
