// Session page: summary, waterfall (+ span details), logs (severity, text), timeline, metrics.
import { get } from "./api.js";
import { h, shortTime, clock, fmtNs, sessionDuration, severityClass } from "./util.js";
import { Waterfall, spanDetail, fromColumns } from "./waterfall.js";
import { lineChart, seriesLines } from "./charts.js";

const LEVELS = [["", "all"], ["DEBUG", "debug+"], ["INFO", "info+"], ["WARN", "warn+"], ["ERROR", "error+"]];

function replaceParams(update) {
  const [path, query = ""] = location.hash.slice(1).split("?");
  const q = new URLSearchParams(query);
  for (const [k, v] of Object.entries(update)) (v ? q.set(k, v) : q.delete(k));
  const s = q.toString();
  history.replaceState(null, "", `#${path}${s ? "?" + s : ""}`);
}

export function summary(s, usage) {
  const used = usage && (usage.llm_calls || usage.input_tokens || usage.tool_calls);
  const cost = usage && usage.cost_usd === null ? "unpriced" : usage ? `$${usage.cost_usd.toFixed(4)}` : "";
  const active = s.ended_at === null || s.ended_at === undefined;
  const item = (k, v) => h("div", { class: "stat" }, h("div", { class: "stat-k" }, k), h("div", { class: "stat-v" }, v));
  return h("section", { class: "summary card" },
    h("div", { class: "summary-title" },
      h("h2", {}, s.session_id), h("span", { class: `pill ${active ? "active" : "ended"}` }, active ? "active" : "ended"),
      h("a", { class: "btn", href: `#/live?session=${encodeURIComponent(s.session_id)}` }, "Live ▸")),
    h("div", { class: "stats" },
      item("room", s.room || "(none)"), item("project", s.project), item("source", s.source),
      item("started", shortTime(s.started_at)), item("ended", active ? "active" : shortTime(s.ended_at)),
      item("duration", sessionDuration(s)), item("spans", s.span_count), item("logs", s.log_count),
      item("metric points", s.metric_point_count), item("errors", h("span", { class: s.error_count ? "error-text" : "" }, s.error_count)),
      item("services", (s.services || []).join(", ")),
      used ? [item("LLM calls", usage.llm_calls), item("tokens", `${usage.input_tokens} in · ${usage.output_tokens} out`),
              item("cost", h("span", { id: "session-cost" }, cost)), item("tool calls", `${usage.tool_calls} (${usage.tool_errors} failed)`)] : null));
}

const LOG_PAGE = 200; // log records a page holds
const EVENT_PAGE = 1000; // timeline events a page holds
const GREP_DELAY_MS = 150; // typing pauses this long before the text filter is asked for

function logRow(l) {
  return h("tr", { class: "log-row", dataset: { severity: l.severity_text || "" } },
    h("td", { class: "mono" }, clock(l.time)),
    h("td", {}, h("span", { class: `sev ${severityClass(l.severity_text, l.severity_number)}` }, l.severity_text || l.severity_number || "")),
    h("td", {}, l.service_name || ""), h("td", { class: "body" }, l.body ?? ""));
}

function logTableOf(tbody) {
  return h("table", { class: "grid logs" },
    h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "level"), h("th", {}, "service"), h("th", {}, "body"))),
    tbody);
}

export function logTable(logs) {
  return logTableOf(h("tbody", {}, logs.map(logRow)));
}

function inView(el) {
  const r = el.getBoundingClientRect();
  const box = el.parentElement.getBoundingClientRect();
  return r.top <= box.bottom && r.top <= window.innerHeight;
}

// Esc on a span: its panel is emptied and the span dropped from the URL.
function closeDetail(detail) {
  return () => {
    detail.replaceChildren(h("p", { class: "muted" }, "Click a span for its attributes, events and links."));
    replaceParams({ span: "" });
  };
}

export async function sessionPage(root, id, params) {
  const sid = encodeURIComponent(id);
  const base = `/api/v1/sessions/${sid}`;
  const detail = h("aside", { class: "detail card", tabindex: "0", "aria-label": "span details" }, h("p", { class: "muted" }, "Click a span for its attributes, events and links."));
  const wfBox = h("div", { class: "wf-box" }, h("p", { class: "muted" }, "loading spans…"));
  const head = h("div", {}, h("p", { class: "muted" }, "loading…"));
  const logsBox = h("div", {});
  const timelineBox = h("div", { class: "timeline" });
  const metricsBox = h("div", { class: "charts" });
  const severity = h("select", { id: "log-severity", "aria-label": "lowest log severity" }, LEVELS.map(([v, label]) => h("option", { value: v }, label)));
  const grep = h("input", { id: "log-grep", type: "search", placeholder: "search log text", "aria-label": "search log text" });
  const logCount = h("span", { class: "muted" });
  severity.value = (params.get("severity") || "").toUpperCase();
  grep.value = params.get("grep") || "";
  root.replaceChildren(head,
    h("section", { class: "card" }, h("h3", {}, "Traces"), h("div", { class: "wf-layout" }, wfBox, detail)),
    h("section", { class: "card" }, h("div", { class: "section-head" }, h("h3", {}, "Logs"), severity, grep, logCount), logsBox),
    h("div", { class: "two" },
      h("section", { class: "card" }, h("h3", {}, "Timeline"), timelineBox),
      h("section", { class: "card" }, h("h3", {}, "Metrics"), metricsBox)));

  let wf = null;
  const traces = new Map(); // trace id -> its full spans, fetched when one of its spans is opened
  const open = async (s) => {
    replaceParams({ span: s.span_id });
    if (!traces.has(s.trace_id)) traces.set(s.trace_id, get(`/api/v1/traces/${s.trace_id}`).then((r) => r.spans));
    const full = (await traces.get(s.trace_id)).find((x) => x.span_id === s.span_id);
    if (full && wf && wf.selected === s.span_id) detail.replaceChildren(spanDetail(full));
  };
  // index.html starts this fetch before the modules load (window.__prefetch), when it can.
  const pre = window.__prefetch;
  window.__prefetch = null;
  const wfPath = `${base}/waterfall`;
  const wfAnswer = pre && pre.path === wfPath ? pre.answer.then((r) => (r && r.ok ? r.json() : get(wfPath))) : get(wfPath);
  const spansP = wfAnswer.then((answer) => {
    const spans = fromColumns(answer);
    wf = new Waterfall(wfBox, spans, { selected: params.get("span"), onSelect: open, onClose: closeDetail(detail) });
    if (!spans.length) wfBox.replaceChildren(h("p", { class: "muted" }, "no spans"));
    window.__wfRendered = performance.now();
    performance.mark("waterfall-rendered");
  });
  await wfAnswer.catch(() => null); // the waterfall first; the smaller reads follow
  get(base).then(({ session, usage }) => head.replaceChildren(summary(session, usage)));

  // Logs: filtered by the server (severity, text), read a page at a time as the table is
  // scrolled; a page's rows are appended, the rows drawn stay as they are (SPEC 8).
  const logRows = h("tbody", {});
  const sentinel = h("div", { class: "logs-more muted", id: "logs-more" });
  logsBox.replaceChildren(h("div", { class: "logs-scroll", id: "logs-scroll" }, logTableOf(logRows), sentinel));
  let logsRead = null; // the listing being read: {next, shown, busy}
  const readLogs = async (listing) => {
    if (listing.busy || listing !== logsRead || listing.done) return;
    listing.busy = true;
    try {
      const q = { limit: LOG_PAGE, severity: severity.value, grep: grep.value.trim(), cursor: listing.next };
      const page = await get(`${base}/logs`, q);
      if (listing !== logsRead) return; // the filter changed meanwhile
      if (listing.first) logRows.replaceChildren();
      listing.first = false;
      logRows.append(...page.logs.map(logRow));
      listing.shown += page.logs.length;
      listing.next = page.next;
      listing.done = !page.next;
      logCount.textContent = `${listing.shown}${listing.done ? "" : "+"} record${listing.shown === 1 ? "" : "s"}`;
      sentinel.textContent = listing.done ? (listing.shown ? "" : "no matching log records") : "scroll for more…";
    } finally {
      listing.busy = false;
    }
    // still in view (a short page, a tall window): read on
    if (!listing.done && listing === logsRead && inView(sentinel)) readLogs(listing);
  };
  const restartLogs = () => {
    logsRead = { next: null, shown: 0, busy: false, done: false, first: true };
    readLogs(logsRead);
  };
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && logsRead) readLogs(logsRead);
  }).observe(sentinel);
  let typing = null;
  severity.addEventListener("change", () => { replaceParams({ severity: severity.value.toLowerCase() }); restartLogs(); });
  grep.addEventListener("input", () => {
    replaceParams({ grep: grep.value });
    clearTimeout(typing);
    typing = setTimeout(restartLogs, GREP_DELAY_MS);
  });
  restartLogs();

  // The timeline a page at a time: a "more" button under it reads the next page.
  const eventItems = h("ol", { class: "events-list" });
  const moreEvents = h("button", { class: "btn", id: "events-more", hidden: true }, "more");
  timelineBox.replaceChildren(eventItems, moreEvents);
  let eventsNext = null;
  const readEvents = async () => {
    const page = await get(`${base}/events`, { limit: EVENT_PAGE, cursor: eventsNext });
    eventItems.append(...page.events.map((e) => {
      const cls = e.type === "span.error" ? "ev-error" : e.type === "log" ? severityClass(e.severity_text) : "ev-life";
      const li = h("li", { class: `ev ${cls}`, dataset: { type: e.type } },
        h("span", { class: "mono" }, clock(e.time)), h("span", { class: "ev-type" }, e.type === "log" ? e.severity_text || "log" : e.type),
        h("span", { class: "ev-msg" }, e.message ?? ""));
      if (e.span_id) li.addEventListener("click", async () => { await spansP; wf && wf.reveal(e.span_id); });
      return li;
    }));
    eventsNext = page.next;
    moreEvents.hidden = !eventsNext;
  };
  moreEvents.addEventListener("click", () => readEvents().catch(() => {}));
  readEvents();

  get(`${base}/metric_series`).then(({ series }) => {
    if (!series.length) return metricsBox.replaceChildren(h("p", { class: "muted" }, "no metrics"));
    metricsBox.replaceChildren(...series.map((s) => {
      const lines = seriesLines(s);
      const attrs = Object.entries(s.attributes || {}).filter(([k]) => k !== "room" && k !== "session").map(([k, v]) => `${k}=${v}`).join(" ");
      return h("figure", { class: "chart-box", dataset: { metric: s.name } },
        h("figcaption", {}, h("b", {}, s.name), ` ${s.type}${lines.rate ? " (delta) as rate per second" : ""}${s.unit ? " · " + s.unit : ""} · ${s.service_name || ""} ${attrs}`),
        lineChart(lines.main, { unit: lines.unit, title: `${s.name} over time` }),
        lines.count ? lineChart(lines.count, { height: 64, title: `${s.name} count over time` }) : null,
        lines.count ? h("div", { class: "legend" }, h("span", { class: "p50" }, "p50"), h("span", { class: "p99" }, "p99"), h("span", { class: "count" }, "count")) : null);
    }));
  });
  await spansP;
}

export async function tracePage(root, traceId, params) {
  const detail = h("aside", { class: "detail card", tabindex: "0", "aria-label": "span details" }, h("p", { class: "muted" }, "Click a span for its attributes, events and links."));
  const wfBox = h("div", { class: "wf-box" });
  const { spans } = await get(`/api/v1/traces/${encodeURIComponent(traceId)}`);
  const first = spans[0] || {};
  root.replaceChildren(
    h("section", { class: "card" },
      h("h2", {}, `trace ${traceId}`),
      h("p", {}, first.session_id ? h("a", { href: `#/session/${encodeURIComponent(first.session_id)}` }, `session ${first.session_id}`) : "", first.room ? ` · room ${first.room}` : "", ` · ${spans.length} spans`),
      h("div", { class: "wf-layout" }, wfBox, detail)));
  new Waterfall(wfBox, spans, {
    selected: params.get("span"),
    onClose: closeDetail(detail),
    onSelect: (s) => { detail.replaceChildren(spanDetail(s)); replaceParams({ span: s.span_id }); },
  });
  window.__wfRendered = performance.now();
}

export { fmtNs };
