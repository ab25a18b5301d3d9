// Session page: summary, waterfall (+ span details), logs (severity, text), timeline, metrics.
import { get } from "./api.js";
import { h, shortTime, clock, fmtNs, sessionDuration, severityClass } from "./util.js";
import { Waterfall, spanDetail, fromColumns } from "./waterfall.js";
import { lineChart, seriesLines } from "./charts.js";
import { LogTable, spanLogs, FIRST_PAGE, PAGE } from "./logs.js";
import { followSession } from "./follow.js";

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
      active ? h("a", { class: "btn", id: "session-live-link", href: `#/live?session=${encodeURIComponent(s.session_id)}` }, "Live ▸") : null),
    h("div", { class: "stats" },
      item("room", s.room || "(none)"), item("project", s.project), item("source", s.source),
      item("started (UTC)", shortTime(s.started_at)), item("ended (UTC)", active ? "active" : shortTime(s.ended_at)),
      item("duration", sessionDuration(s)), item("spans", s.span_count), item("logs", s.log_count),
      item("metric points", s.metric_point_count), item("errors", h("span", { class: s.error_count ? "error-text" : "" }, s.error_count)),
      item("services", (s.services || []).join(", ")),
      used ? [item("LLM calls", usage.llm_calls), item("tokens", `${usage.input_tokens} in · ${usage.output_tokens} out`),
              item("cost", h("span", { id: "session-cost" }, cost)), item("tool calls", `${usage.tool_calls} (${usage.tool_errors} failed)`)] : null));
}

const EVENT_PAGE = 1000; // timeline events a page holds
const GREP_DELAY_MS = 150; // typing pauses this long before the text filter is asked for

function notFound(root, what, e) {
  root.replaceChildren(h("section", { class: "card not-found", id: "not-found" }, h("h2", {}, `${what} not found`),
    h("p", { class: "muted" }, e.message), h("p", {}, h("a", { href: "#/sessions" }, "← all sessions"))));
}

// Bring a span into view: the waterfall's own scroll, then the page (the waterfall may be above).
export function showSpan(wf, spanId) {
  if (!wf || !wf.all.some((r) => r.kind === "span" && r.span.span_id === spanId)) return false; // shown or collapsed
  wf.reveal(spanId);
  const row = wf.el.querySelector(`.wf-row[data-span-id="${CSS.escape(spanId)}"]`);
  (row || wf.el).scrollIntoView({ block: "center" });
  return true;
}

// The span panel: details, then the span's own log records (with a way to see them in the table).
function spanPanel(detail, full, base, onShowLogs) {
  detail.replaceChildren(spanDetail(full));
  const logsAt = h("div", {});
  detail.firstChild.append(logsAt);
  spanLogs(base, full, () => onShowLogs(full))
    .then((box) => {
      if (!detail.contains(logsAt)) return;
      const n = box.querySelectorAll("li.span-log").length;
      if (n) box.append(h("button", { class: "btn", id: "span-logs-show", onclick: () => onShowLogs(full) }, "Show in the logs table"));
      logsAt.replaceWith(box);
    })
    .catch((e) => logsAt.replaceWith(h("p", { class: "error-text" }, e.message)));
}

// Esc on a span: its panel is emptied and the span dropped from the URL.
function closeDetail(detail) {
  return () => {
    detail.replaceChildren(h("p", { class: "muted" }, "Click a span for its attributes, events, links and logs."));
    replaceParams({ span: "" });
  };
}

export async function sessionPage(root, id, params, signal) {
  const sid = encodeURIComponent(id);
  const base = `/api/v1/sessions/${sid}`;
  // index.html starts the waterfall's fetch before the modules load (window.__prefetch).
  const pre = window.__prefetch;
  window.__prefetch = null;
  const wfPath = `${base}/waterfall`;
  const wfAnswer = pre && pre.path === wfPath ? pre.answer.then((r) => (r && r.ok ? r.json() : get(wfPath))) : get(wfPath);
  const detail = h("aside", { class: "detail card", tabindex: "0", "aria-label": "span details" }, h("p", { class: "muted" }, "Click a span for its attributes, events, links and logs."));
  const wfBox = h("div", { class: "wf-box" }, h("p", { class: "muted" }, "loading spans…"));
  const head = h("div", {}, h("p", { class: "muted" }, "loading…"));
  const logsBox = h("div", {});
  const timelineBox = h("div", { class: "timeline" });
  const metricsBox = h("div", { class: "charts" });
  const severity = h("select", { id: "log-severity", "aria-label": "lowest log severity" }, LEVELS.map(([v, label]) => h("option", { value: v }, label)));
  const grep = h("input", { id: "log-grep", type: "search", placeholder: "search log text", "aria-label": "search log text" });
  const spanChip = h("span", { class: "chip", id: "log-span-filter", hidden: true });
  const logCount = h("span", { class: "muted", id: "log-count" });
  severity.value = (params.get("severity") || "").toUpperCase();
  grep.value = params.get("grep") || "";
  let logSpan = params.get("logspan") || ""; // the logs table shows only this span's logs
  const logsCard = h("section", { class: "card", id: "logs-card" }, h("div", { class: "section-head" }, h("h3", {}, "Logs"), severity, grep, spanChip, logCount), logsBox);
  root.replaceChildren(head,
    h("section", { class: "card" }, h("h3", {}, "Traces"), h("div", { class: "wf-layout" }, wfBox, detail)),
    logsCard,
    h("div", { class: "two" },
      h("section", { class: "card" }, h("h3", {}, "Timeline"), timelineBox),
      h("section", { class: "card" }, h("h3", {}, "Metrics"), metricsBox)));

  let wf = null;
  const names = new Map(); // span id -> span (the waterfall's), for the logs' span column
  let table = null;
  // Logs: filtered by the server (severity, text, span), a page at a time, virtualized.
  const sevNumber = { TRACE: 1, DEBUG: 5, INFO: 9, WARN: 13, ERROR: 17, FATAL: 21 };
  const showChip = () => {
    spanChip.hidden = !logSpan;
    const s = names.get(logSpan);
    spanChip.replaceChildren(`span ${s ? s.name : logSpan}`, h("button", { class: "chip-x", title: "show every span's logs", "aria-label": "clear the span filter",
      onclick: () => { logSpan = ""; replaceParams({ logspan: "" }); restartLogs(); } }, "✕"));
  };
  const restartLogs = () => { showChip(); if (table) table.restart(); };
  let typing = null;
  severity.addEventListener("change", () => { replaceParams({ severity: severity.value.toLowerCase() }); restartLogs(); });
  grep.addEventListener("input", () => {
    replaceParams({ grep: grep.value });
    clearTimeout(typing);
    typing = setTimeout(restartLogs, GREP_DELAY_MS);
  });
  const logWanted = (l) => (!severity.value || (l.severity_number || 0) >= sevNumber[severity.value])
    && (!grep.value.trim() || String(l.body ?? "").toLowerCase().includes(grep.value.trim().toLowerCase()))
    && (!logSpan || l.span_id === logSpan);

  let answer;
  try {
    answer = await wfAnswer;
  } catch (e) {
    if (e.status === 404) return notFound(root, `Session ${id}`, e);
    throw e;
  }
  const spans = fromColumns(answer);
  for (const x of spans) names.set(x.span_id, x);
  const traces = new Map(); // trace id -> its full spans, fetched when one of its spans is opened
  const showLogsOf = (s) => {
    logSpan = s.span_id;
    replaceParams({ logspan: logSpan });
    restartLogs();
    logsCard.scrollIntoView({ block: "start" });
  };
  const open = async (s) => {
    replaceParams({ span: s.span_id });
    if (!traces.has(s.trace_id)) traces.set(s.trace_id, get(`/api/v1/traces/${s.trace_id}`).then((r) => r.spans));
    const full = (await traces.get(s.trace_id)).find((x) => x.span_id === s.span_id);
    if (full && wf && wf.selected === s.span_id) spanPanel(detail, full, base, showLogsOf);
    if (table) table.markSpan(s.span_id);
  };
  const onSelect = (s) => open(s).catch(() => {});
  const onClose = closeDetail(detail);
  // Drawn again with a followed session's new spans: the scroll position, the selected span
  // (not selected again, so its panel is not read again) and the waterfall's tools' state stay.
  const drawWaterfall = () => {
    if (!wf) wf = new Waterfall(wfBox, spans, { selected: params.get("span"), onSelect, onClose });
    else {
      wf.setSpans(spans);
      if (!wf.el.isConnected) wfBox.replaceChildren(wf.el);
    }
    if (!spans.length) wfBox.replaceChildren(h("p", { class: "muted" }, "no spans"));
  };
  drawWaterfall();
  if (signal) signal.addEventListener("abort", () => wf.destroy());
  window.__wfRendered = performance.now();
  performance.mark("waterfall-rendered");
  table = new LogTable({
    id: "logs",
    fetchPage: (cursor, first) => get(`${base}/logs`, { limit: first ? FIRST_PAGE : PAGE, severity: severity.value, grep: grep.value.trim(), span_id: logSpan, cursor }),
    spanName: (spanId) => names.get(spanId)?.name,
    onPick: (l) => { if (!showSpan(wf, l.span_id)) location.hash = `#/trace/${l.trace_id}${l.span_id ? "?span=" + l.span_id : ""}`; },
    status: (text) => (logCount.textContent = text),
  });
  logsBox.replaceChildren(table.el);
  showChip();

  const readSummary = () => get(base).then(({ session: s, usage }) => {
    head.replaceChildren(summary(s, usage));
    return s;
  });
  const summaryP = readSummary().catch(() => null);

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
      if (e.span_id) li.addEventListener("click", () => showSpan(wf, e.span_id));
      return li;
    }));
    eventsNext = page.next;
    moreEvents.hidden = !eventsNext;
  };
  moreEvents.addEventListener("click", () => readEvents().catch(() => {}));

  const readMetrics = () => get(`${base}/metric_series`).then(({ series }) => {
    if (!series.length) return metricsBox.replaceChildren(h("p", { class: "muted" }, "no metrics"));
    metricsBox.replaceChildren(...series.map((s) => {
      const lines = seriesLines(s);
      const attrs = Object.entries(s.attributes || {}).filter(([k]) => k !== "room" && k !== "session").map(([k, v]) => `${k}=${v}`).join(" ");
      return h("figure", { class: "chart-box", dataset: { metric: s.name, points: String(s.points.length) } },
        h("figcaption", {}, h("b", {}, s.name), ` ${s.type}${lines.rate ? " (delta) as rate per second" : ""}${s.unit ? " · " + s.unit : ""} · ${s.service_name || ""} ${attrs}`),
        lineChart(lines.main, { unit: lines.unit, title: `${s.name} over time` }),
        lines.count ? lineChart(lines.count, { height: 64, title: `${s.name} count over time` }) : null,
        lines.count ? h("div", { class: "legend" }, h("span", { class: "p50" }, "p50"), h("span", { class: "p99" }, "p99"), h("span", { class: "count" }, "count")) : null);
    }));
  });
  // The timeline and the charts once the logs' first page is drawn (they are further down).
  table.firstPage.catch(() => {}).then(() => {
    readEvents().catch(() => {});
    readMetrics().catch(() => {});
  });

  // An active session follows its records as they arrive (server-sent events, as the Live page).
  const s = await summaryP;
  if (s && s.ended_at === null && signal) {
    const opened = Date.now() * 1e6 - 10e9; // ns; the page's reads began after this
    const addSpans = (added) => {
      let n = 0;
      for (const x of added) if (!names.has(x.span_id)) { spans.push(x); names.set(x.span_id, x); n++; }
      if (n) drawWaterfall();
    };
    followSession(root, id, signal, {
      spans: addSpans,
      logs: (added) => table.append(added.filter(logWanted)),
      catchUp: async () => { // what arrived between the first reads and the stream's start
        addSpans(fromColumns(await get(wfPath)));
        table.append((await get(`${base}/logs`, { after: String(opened), limit: 10000 })).logs.filter(logWanted));
      },
      refresh: () => Promise.all([readSummary(), readMetrics()]).then(([now]) => now),
    });
  }
}

export async function tracePage(root, traceId, params, signal) {
  const detail = h("aside", { class: "detail card", tabindex: "0", "aria-label": "span details" }, h("p", { class: "muted" }, "Click a span for its attributes, events, links and logs."));
  const wfBox = h("div", { class: "wf-box" });
  const tid = encodeURIComponent(traceId);
  let answer;
  try {
    answer = await get(`/api/v1/traces/${tid}/waterfall`); // compact: the waterfall at once
  } catch (e) {
    if (e.status === 404 || e.status === 400) return notFound(root, `Trace ${traceId}`, e);
    throw e;
  }
  const spans = fromColumns(answer);
  const sessionId = answer.session_id;
  const base = sessionId ? `/api/v1/sessions/${encodeURIComponent(sessionId)}` : null;
  const logCount = h("span", { class: "muted", id: "log-count" });
  const logsBox = h("div", {});
  root.replaceChildren(
    h("section", { class: "card" },
      h("h2", {}, `trace ${traceId}`),
      h("p", {}, sessionId ? h("a", { href: `#/session/${encodeURIComponent(sessionId)}` }, `session ${sessionId}`) : "", answer.room ? ` · room ${answer.room}` : "", ` · ${spans.length} spans`),
      h("div", { class: "wf-layout" }, wfBox, detail)),
    h("section", { class: "card", id: "logs-card" }, h("div", { class: "section-head" }, h("h3", {}, "Logs of this trace"), logCount), logsBox));
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  let table = null;
  let full = null; // the trace's spans with attributes, events and links: read when one is opened
  const open = async (s) => {
    replaceParams({ span: s.span_id });
    if (table) table.markSpan(s.span_id);
    full = full || get(`/api/v1/traces/${tid}`).then((r) => new Map(r.spans.map((x) => [x.span_id, x])));
    const one = (await full).get(s.span_id);
    if (one && wf.selected === s.span_id) {
      spanPanel(detail, one, base, () => { table && table.markSpan(s.span_id); logsBox.scrollIntoView({ block: "start" }); });
    }
  };
  const wf = new Waterfall(wfBox, spans, { selected: params.get("span"), onSelect: (s) => open(s).catch(() => {}), onClose: closeDetail(detail) });
  if (signal) signal.addEventListener("abort", () => wf.destroy());
  window.__wfRendered = performance.now();
  if (!base) return logsBox.replaceChildren(h("p", { class: "muted" }, "no session: no logs"));
  table = new LogTable({
    id: "logs",
    maxHeight: 360,
    fetchPage: (cursor, first) => get(`${base}/logs`, { limit: first ? FIRST_PAGE : PAGE, trace_id: traceId, cursor }),
    spanName: (spanId) => byId.get(spanId)?.name,
    onPick: (l) => showSpan(wf, l.span_id),
    status: (text) => (logCount.textContent = text),
  });
  logsBox.replaceChildren(table.el);
}

export { fmtNs };
