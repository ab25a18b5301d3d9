// Router (the hash holds the page and its query) and the sessions and search pages.
import { get } from "./api.js";
import { h, shortTime, fmtNs, sessionDuration, hashParams, setHash } from "./util.js";
import { sessionPage, tracePage } from "./session.js";
import { livePage } from "./live.js";
import { usagePage, fmtCost } from "./usage.js";
import { enableKeys } from "./keys.js";

const REFRESH_MS = 5000;
const SESSIONS_PAGE = 200; // sessions a page of the list holds (#/sessions?limit=N: N)
const MAX_PAGE = 10000; // the API's largest page
const SINCE = [["", "any time"], ["15m", "last 15 min"], ["1h", "last hour"], ["6h", "last 6 hours"], ["24h", "last day"], ["7d", "last week"]];
let current = null;

function select(id, options, value, label) {
  const el = h("select", { id, "aria-label": label }, options.map(([v, label]) => h("option", { value: v }, label)));
  el.value = value;
  return el;
}

async function sessionsPage(root, params, signal) {
  const mode = params.get("active") === "false" ? "ended" : params.get("active") === "true" ? "active" : "recent";
  const { rooms } = await get("/api/v1/rooms", { limit: MAX_PAGE });
  const roomSel = select("sessions-room", [["", "all rooms"], ...rooms.map((r) => [r.room || "", r.room || "(none)"])], params.get("room") || "", "room");
  const sinceSel = select("sessions-since", SINCE, params.get("since") || "", "started since");
  const auto = h("input", { type: "checkbox", id: "sessions-auto", checked: params.get("refresh") !== "off" });
  const toggle = h("div", { class: "toggle", id: "sessions-mode" }, [["recent", "Recent"], ["active", "Active"], ["ended", "Ended"]].map(([m, label]) =>
    h("button", { class: m === mode ? "on" : "", dataset: { mode: m }, onclick: () => go({ mode: m }) }, label)));
  const tbody = h("tbody", { id: "sessions-rows" });
  const stamp = h("span", { class: "muted" });
  const total = h("span", { class: "muted", id: "sessions-total" });
  const more = h("button", { class: "btn", id: "sessions-more", hidden: true }, "more");
  const pageSize = Math.min(Math.max(parseInt(params.get("limit"), 10) || SESSIONS_PAGE, 1), MAX_PAGE);
  const go = (over = {}) => {
    const m = over.mode || mode;
    setHash("/sessions", { active: m === "active" ? "true" : m === "ended" ? "false" : "", room: roomSel.value, since: sinceSel.value, refresh: auto.checked ? "" : "off", limit: params.get("limit") || "" });
  };
  roomSel.addEventListener("change", () => go());
  sinceSel.addEventListener("change", () => go());
  auto.addEventListener("change", () => go());
  root.replaceChildren(h("section", { class: "card" },
    h("div", { class: "section-head" }, h("h2", {}, "Sessions"), toggle, roomSel, sinceSel, h("label", {}, auto, " auto-refresh"), total, stamp),
    h("table", { class: "grid sessions" },
      h("thead", {}, h("tr", {}, ["id", "room", "started", "ended", "duration", "spans", "logs", "errors", "tokens", "cost", "services", ""].map((x) => h("th", {}, x)))),
      tbody),
    h("div", { class: "more-row" }, more)));
  let used = new Map(); // tokens and cost per session (GET /api/v1/usage?by=session)
  const row = (s) => {
    const href = `#/session/${encodeURIComponent(s.session_id)}`;
    const active = s.ended_at === null;
    return h("tr", { class: "session-row", dataset: { sessionId: s.session_id }, onclick: (e) => { if (!e.target.closest("a")) location.hash = href; } },
      h("td", {}, h("a", { href }, s.session_id)), h("td", {}, s.room || ""), h("td", { class: "mono" }, shortTime(s.started_at)),
      h("td", {}, active ? h("span", { class: "pill active" }, "active") : h("span", { class: "mono" }, shortTime(s.ended_at))),
      h("td", { class: "num" }, sessionDuration(s)), h("td", { class: "num" }, s.span_count), h("td", { class: "num" }, s.log_count),
      h("td", { class: `num ${s.error_count ? "error-text" : ""}` }, s.error_count),
      h("td", { class: "num session-tokens" }, used.has(s.session_id) ? used.get(s.session_id).input_tokens + used.get(s.session_id).output_tokens : ""),
      h("td", { class: "num session-cost" }, used.has(s.session_id) ? fmtCost(used.get(s.session_id)) : ""),
      h("td", {}, (s.services || []).join(", ")),
      h("td", {}, h("a", { class: "small", href: `#/live?session=${encodeURIComponent(s.session_id)}`, title: "live view" }, "live")));
  };
  const filters = () => ({ room: roomSel.value, since: sinceSel.value, active: mode === "active" ? "true" : mode === "ended" ? "false" : "" });
  let next = null; // the cursor of the page after the rows shown (SPEC 8)
  let shown = 0;
  const showTotal = (n) => { total.textContent = `${shown} of ${n} session${n === 1 ? "" : "s"}`; total.dataset.total = n; };
  // The first pages again (as many rows as are shown), with the total: what auto-refresh reads.
  const load = async () => {
    const limit = Math.min(Math.max(shown, pageSize), MAX_PAGE);
    const [page, usage] = await Promise.all([get("/api/v1/sessions", { ...filters(), limit, count: "true" }),
      get("/api/v1/usage", { by: "session", room: roomSel.value, since: sinceSel.value, limit: 10000 }).catch(() => ({ usage: [] }))]);
    if (signal.aborted) return;
    used = new Map(usage.usage.map((u) => [u.session, u]));
    tbody.replaceChildren(...page.sessions.map(row));
    shown = page.sessions.length;
    next = page.next;
    if (!shown) tbody.append(h("tr", {}, h("td", { colspan: 12, class: "muted" }, "no sessions")));
    showTotal(page.total);
    more.hidden = !next;
    stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
  };
  // The page after the rows shown, appended (rows already drawn stay as they are).
  const loadMore = async () => {
    if (!next) return;
    more.disabled = true;
    try {
      const page = await get("/api/v1/sessions", { ...filters(), limit: pageSize, cursor: next });
      if (signal.aborted) return;
      tbody.append(...page.sessions.map(row));
      shown += page.sessions.length;
      next = page.next;
      showTotal(Number(total.dataset.total));
      more.hidden = !next;
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", () => loadMore().catch(() => {}));
  await load();
  if (auto.checked) {
    const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
    signal.addEventListener("abort", () => clearInterval(timer));
  }
}

const SEARCH_FIELDS = [
  ["room", "room", "studio"], ["service", "service", "agent"], ["name", "name contains", "llm"],
  ["min_duration", "min duration", "250ms, 1.5s"], ["max_duration", "max duration", "2s"],
  ["attrs", "attributes K=V", "status=error, tool=render"], ["since", "since", "15m, 2h, ISO"], ["until", "until", "ISO time"], ["limit", "limit", "100"],
];

async function searchPage(root, params) {
  const inputs = {};
  const form = h("form", { class: "search-form", id: "search-form" }, SEARCH_FIELDS.map(([k, label, ph]) => {
    inputs[k] = h("input", { name: k, id: `search-${k}`, placeholder: ph, value: k === "attrs" ? params.getAll("attrs").join(", ") : params.get(k) || "" });
    return h("label", {}, h("span", {}, label), inputs[k]);
  }), h("button", { class: "btn primary", type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = {};
    for (const [k] of SEARCH_FIELDS) q[k] = inputs[k].value.trim();
    q.attrs = q.attrs ? q.attrs.split(/\s*,\s*|\s+/).filter(Boolean) : "";
    q.run = "1";
    setHash("/search", q);
  });
  const results = h("div", { id: "search-results" });
  root.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Trace search"), form), h("section", { class: "card" }, results));
  if (![...params.keys()].length) return results.replaceChildren(h("p", { class: "muted" }, "Spans across sessions, newest first. Durations: a bare number is ms; or ns/us/ms/s/m."));
  const q = {};
  for (const [k] of SEARCH_FIELDS) q[k] = k === "attrs" ? params.getAll(k) : params.get(k) || "";
  try {
    const { spans } = await get("/api/v1/traces", q);
    results.replaceChildren(h("p", { class: "muted", id: "search-count" }, `${spans.length} span${spans.length === 1 ? "" : "s"}`),
      h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ["time", "trace", "span", "service", "duration", "status", "room", "session"].map((x) => h("th", {}, x)))),
        h("tbody", {}, spans.map((s) => h("tr", { class: "search-row", dataset: { spanId: s.span_id } },
          h("td", { class: "mono" }, shortTime(s.start_time)),
          h("td", { class: "mono" }, h("a", { href: `#/trace/${s.trace_id}?span=${s.span_id}` }, s.trace_id.slice(0, 16) + "…")),
          h("td", {}, h("a", { href: `#/trace/${s.trace_id}?span=${s.span_id}` }, s.name)), h("td", {}, s.service_name || ""),
          h("td", { class: "num" }, fmtNs(s.duration_ns)), h("td", {}, s.status_code === "ERROR" ? h("span", { class: "error-text" }, "ERROR") : s.status_code),
          h("td", {}, s.room || ""), h("td", {}, s.session_id ? h("a", { href: `#/session/${encodeURIComponent(s.session_id)}` }, s.session_id) : ""))))));
  } catch (e) {
    results.replaceChildren(h("p", { class: "error-text", id: "search-error" }, e.message));
  }
}

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const { path, params } = hashParams();
  const root = document.getElementById("app");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("on", a.dataset.nav === (parts[0] === "session" || parts[0] === "trace" ? "sessions" : parts[0]));
  try {
    if (parts[0] === "session" && parts[1]) await sessionPage(root, decodeURIComponent(parts[1]), params);
    else if (parts[0] === "trace" && parts[1]) await tracePage(root, parts[1], params);
    else if (parts[0] === "search") await searchPage(root, params);
    else if (parts[0] === "live") await livePage(root, params, current.signal);
    else if (parts[0] === "usage") await usagePage(root, params);
    else await sessionsPage(root, params, current.signal);
  } catch (e) {
    root.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Error"), h("p", { class: "error-text" }, e.message)));
  }
}

window.addEventListener("hashchange", route);
enableKeys(document.getElementById("app"));
route();
