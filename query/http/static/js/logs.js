// Log tables: a virtualized table of a (possibly huge) paged log listing, and the short list of a
// span's logs in the span panel. The listing is read a page at a time from the server (filters
// applied there: severity, text, trace/span), and only the rows in view are in the DOM, so a
// session of 10,000 log records scrolls like one of 10. The table has its own keys (keys.js leaves
// it alone: its rows come and go as it scrolls): ↑/↓, PageUp/PageDown, Home/End move through
// every record, read or drawn as needed, and Enter selects the row's span.
import { get } from "./api.js";
import { h, clock, severityClass } from "./util.js";

export const LOG_ROW = 24; // px; every row one line high (the full body is its tooltip)
const OVERSCAN = 10;
export const FIRST_PAGE = 100; // records the first read holds (drawn at once)
export const PAGE = 500; // records each further read holds

function spanCell(l, spanName) {
  if (!l.trace_id) return "";
  const label = l.span_id ? spanName(l.span_id) || `${l.span_id.slice(0, 8)}…` : `trace ${l.trace_id.slice(0, 8)}…`;
  return h("a", { class: "log-span", href: `#/trace/${l.trace_id}${l.span_id ? "?span=" + l.span_id : ""}`, title: `trace ${l.trace_id}${l.span_id ? " span " + l.span_id : ""}` }, label);
}

// What tells two log records apart (a record read twice: by a page and live).
const logKey = (l) => `${l.time}|${l.trace_id}|${l.span_id}|${l.service_name}|${l.severity_number}|${l.body}`;

export function logRow(l, spanName = () => null) {
  return h("tr", { class: "log-row", dataset: { severity: l.severity_text || "", traceId: l.trace_id || "", spanId: l.span_id || "" } },
    h("td", { class: "mono" }, clock(l.time)),
    h("td", {}, h("span", { class: `sev ${severityClass(l.severity_text, l.severity_number)}` }, l.severity_text || l.severity_number || "")),
    h("td", {}, l.service_name || ""), h("td", { class: "log-span-cell" }, spanCell(l, spanName)),
    h("td", { class: "body", title: l.body ?? "" }, l.body ?? ""));
}

// A paged listing drawn as a virtual table. fetchPage(cursor, first) -> {logs, next} (first: the
// listing's first read, which should be small); onPick(log): a
// row (with a span) was clicked; spanName(span_id) -> a name for the span column.
export class LogTable {
  constructor({ id = "", fetchPage, onPick, spanName = () => null, status = () => {}, maxHeight = 520 }) {
    this.fetchPage = fetchPage;
    this.onPick = onPick;
    this.spanName = spanName;
    this.status = status;
    this.top = h("tr", { class: "vpad" }, h("td", { colspan: 5 }));
    this.bottom = h("tr", { class: "vpad" }, h("td", { colspan: 5 }));
    this.rowH = LOG_ROW; // measured on the first rows drawn
    this.body = h("tbody", { dataset: { keys: "own" } }, this.top, this.bottom);
    this.focusIndex = 0; // the record whose row is the table's Tab stop
    this.more = h("div", { class: "logs-more muted", id: id ? `${id}-more` : null });
    this.scroll = h("div", { class: "logs-scroll logs-virtual", id: id ? `${id}-scroll` : null, style: { maxHeight: `${maxHeight}px` } },
      h("table", { class: "grid logs" },
        h("thead", {}, h("tr", {}, ["time (UTC)", "level", "service", "span", "body"].map((x) => h("th", {}, x)))),
        this.body),
      this.more);
    this.el = this.scroll;
    this.scroll.addEventListener("scroll", () => this.draw(), { passive: true });
    this.body.addEventListener("click", (e) => {
      const tr = e.target.closest("tr.log-row");
      if (!tr || !this.onPick) return;
      const log = this.records[Number(tr.dataset.index)];
      if (log && log.trace_id) {
        e.preventDefault();
        this.onPick(log);
      }
    });
    this.body.addEventListener("keydown", (e) => this.key(e));
    this.body.addEventListener("focusin", (e) => {
      const tr = e.target.closest("tr.log-row");
      if (!tr || Number(tr.dataset.index) === this.focusIndex) return;
      this.focusIndex = Number(tr.dataset.index);
      for (const r of this.body.querySelectorAll("tr.log-row")) r.tabIndex = r === tr ? 0 : -1;
    });
    this.records = [];
    this.restart();
  }

  // A new listing (the filters changed): what was drawn goes, page one is read.
  restart() {
    this.listing = { next: null, done: false, busy: false, first: true };
    this.focusIndex = 0;
    this.firstPage = this.fill(this.listing);
  }

  get loaded() {
    return this.records.length;
  }

  async fill(listing) {
    if (listing.busy || listing.done || listing !== this.listing) return;
    listing.busy = true;
    try {
      let page;
      try {
        page = await this.fetchPage(listing.next, listing.first);
      } catch (e) {
        if (listing === this.listing) this.more.textContent = e.message;
        return;
      }
      if (listing !== this.listing) return; // the filters changed meanwhile
      if (listing.first) {
        this.records = [];
        this.scroll.scrollTop = 0;
      }
      listing.first = false;
      this.records.push(...page.logs);
      listing.next = page.next;
      listing.done = !page.next;
      this.showStatus();
      this.draw(true);
    } finally {
      listing.busy = false;
    }
    if (!listing.done && this.nearEnd()) this.fill(listing);
  }

  showStatus() {
    const n = this.records.length;
    this.more.textContent = this.listing.done ? (n ? "" : "no matching log records") : "scroll for more…";
    this.el.dataset.loaded = String(n);
    this.status(`${n}${this.listing.done ? "" : "+"} record${n === 1 ? "" : "s"}`);
  }

  nearEnd() {
    const height = this.scroll.clientHeight || 520;
    return this.scroll.scrollTop + height >= this.records.length * this.rowH - height;
  }

  // Records that arrived live (already filtered by the caller): appended when the listing has
  // been read to its end (otherwise its next page holds them).
  append(logs) {
    if (!this.listing.done || !logs.length) return;
    const have = new Set(this.records.map(logKey));
    const fresh = logs.filter((l) => !have.has(logKey(l)) && have.add(logKey(l)));
    if (!fresh.length) return;
    const stick = this.nearEnd();
    this.records.push(...fresh);
    this.showStatus();
    this.draw(true);
    if (stick) this.scroll.scrollTop = this.scroll.scrollHeight;
  }

  draw(force = false) {
    const height = this.scroll.clientHeight || 520;
    const n = this.records.length;
    const first = Math.max(0, Math.floor(this.scroll.scrollTop / this.rowH) - OVERSCAN);
    const last = Math.min(n, Math.ceil((this.scroll.scrollTop + height) / this.rowH) + OVERSCAN);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const refocus = this.body.contains(document.activeElement);
    const rows = [];
    for (let i = first; i < last; i++) {
      const tr = logRow(this.records[i], this.spanName);
      tr.dataset.index = String(i);
      tr.tabIndex = i === this.focusIndex ? 0 : -1;
      if (this.marked && this.records[i].span_id === this.marked) tr.classList.add("marked");
      rows.push(tr);
    }
    this.top.firstChild.style.height = `${first * this.rowH}px`;
    this.bottom.firstChild.style.height = `${(n - last) * this.rowH}px`;
    if (rows.length && (this.focusIndex < first || this.focusIndex >= last)) rows[0].tabIndex = 0; // Tab always lands in the table
    const keep = this.scroll.scrollTop;
    this.body.replaceChildren(this.top, ...rows, this.bottom);
    // Chromium lays the table out while the focused row is being removed (its blur), the rows
    // gone, and clamps the scroll to that short table: put it back.
    if (this.scroll.scrollTop !== keep) this.scroll.scrollTop = keep;
    if (refocus) this.body.querySelector(`tr[data-index="${this.focusIndex}"]`)?.focus({ preventScroll: true });
    if (rows.length && !this.measured) { // the real row height (fonts, borders), once
      const real = rows[0].getBoundingClientRect().height;
      if (real > 0) {
        this.measured = true;
        if (Math.abs(real - this.rowH) > 0.01) {
          this.rowH = real;
          return this.draw(true);
        }
      }
    }
    if (!this.listing.done && last >= n - OVERSCAN) this.fill(this.listing);
  }

  key(e) {
    if (e.altKey || e.ctrlKey || e.metaKey || !e.target.closest("tr.log-row")) return;
    const page = Math.max(1, Math.floor(this.scroll.clientHeight / this.rowH) - 2);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, Home: -Infinity, End: Infinity };
    if (e.key in moves) this.focusRow(this.focusIndex + moves[e.key]);
    else if (e.key === "Enter") {
      const log = this.records[this.focusIndex];
      if (!log || !log.trace_id || !this.onPick) return;
      this.onPick(log);
    } else return;
    e.preventDefault();
  }

  // Move the keyboard focus to record i, its row scrolled into view (below the sticky header).
  focusRow(i) {
    if (!this.records.length) return;
    this.focusIndex = Math.max(0, Math.min(this.records.length - 1, i));
    const top = this.focusIndex * this.rowH;
    const view = this.scroll.clientHeight - (this.scroll.querySelector("thead")?.offsetHeight || 0);
    if (top < this.scroll.scrollTop) this.scroll.scrollTop = top;
    else if (top + this.rowH > this.scroll.scrollTop + view) this.scroll.scrollTop = top + this.rowH - view;
    this.draw(true);
    const tr = this.body.querySelector(`tr[data-index="${this.focusIndex}"]`);
    if (tr) {
      tr.focus({ preventScroll: true });
      tr.scrollIntoView({ block: "nearest" }); // the page too, when the table is partly out of it
    }
  }

  // Scroll the row of this span's first log into view and mark the span's rows.
  markSpan(spanId) {
    this.marked = spanId;
    for (const tr of this.body.querySelectorAll("tr.log-row")) tr.classList.toggle("marked", tr.dataset.spanId === spanId);
  }
}

// The span panel's list of the span's own log records (first page), each a link back to it.
export async function spanLogs(base, span, onPick, limit = 100) {
  const box = h("div", { class: "span-logs", dataset: { spanId: span.span_id } }, h("h4", {}, "Logs"), h("p", { class: "muted" }, "loading…"));
  if (!base) {
    box.lastChild.textContent = "none (the span has no session)";
    return box;
  }
  const page = await get(`${base}/logs`, { trace_id: span.trace_id, span_id: span.span_id, limit });
  box.firstChild.textContent = `Logs (${page.logs.length}${page.next ? "+" : ""})`;
  if (!page.logs.length) {
    box.lastChild.textContent = "none";
    return box;
  }
  box.lastChild.replaceWith(h("ul", { class: "span-log-list" }, page.logs.map((l) =>
    h("li", { class: "span-log", dataset: { spanId: l.span_id || "" } },
      h("span", { class: "mono" }, clock(l.time)), " ",
      h("span", { class: `sev ${severityClass(l.severity_text, l.severity_number)}` }, l.severity_text || l.severity_number || ""), " ",
      h("a", { href: "#", onclick: (e) => { e.preventDefault(); onPick(l); } }, l.body ?? "")))));
  return box;
}
