// Router (the hash holds the page and its query) and the sessions and search pages.
import { get } from "./api.js";
import { h, shortTime, sessionDuration, hashParams, setHash } from "./util.js";
import { sessionPage, tracePage } from "./session.js";
import { livePage } from "./live.js";
import { usagePage, fmtCost } from "./usage.js";
import { enableKeys } from "./keys.js";
import { searchPage } from "./search.js";

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
  // The room and project choices come with the rooms list, read beside the first page.
  const chosen = (key, all) => [["", all], ...(params.get(key) ? [[params.get(key), params.get(key)]] : [])];
  const roomSel = select("sessions-room", chosen("room", "all rooms"), params.get("room") || "", "room");
  const projectSel = select("sessions-project", chosen("project", "all projects"), params.get("project") || "", "project");
  const roomsRead = get("/api/v1/rooms", { limit: MAX_PAGE }).then(({ rooms }) => {
    const fill = (sel, options, all) => {
      const value = sel.value;
      sel.replaceChildren(...[["", all], ...options].map(([v, label]) => h("option", { value: v }, label)));
      if (value && !options.some(([v]) => v === value)) sel.append(h("option", { value }, value));
      sel.value = value;
    };
    fill(roomSel, [...new Map(rooms.map((r) => [r.room || "", r.room || "(none)"])).entries()].filter(([v]) => v), "all rooms");
    fill(projectSel, [...new Set(rooms.map((r) => r.project).filter(Boolean))].sort().map((p) => [p, p]), "all projects");
    root.dataset.rooms = "ready";
  });
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
    setHash("/sessions", { active: m === "active" ? "true" : m === "ended" ? "false" : "", room: roomSel.value, project: projectSel.value, since: sinceSel.value, refresh: auto.checked ? "" : "off", limit: params.get("limit") || "" });
  };
  roomSel.addEventListener("change", () => go());
  projectSel.addEventListener("change", () => go());
  sinceSel.addEventListener("change", () => go());
  auto.addEventListener("change", () => go());
  root.replaceChildren(h("section", { class: "card" },
    h("div", { class: "section-head" }, h("h2", {}, "Sessions"), toggle, projectSel, roomSel, sinceSel, h("label", {}, auto, " auto-refresh"), total, stamp),
    h("table", { class: "grid sessions" },
      h("thead", {}, h("tr", {}, ["id", "project", "room", "started (UTC)", "ended (UTC)", "duration", "spans", "logs", "errors", "tokens", "cost", "services", ""].map((x) => h("th", {}, x)))),
      tbody),
    h("div", { class: "more-row" }, more)));
  let used = new Map(); // tokens and cost per session (GET /api/v1/usage?by=session)
  const row = (s) => {
    const href = `#/session/${encodeURIComponent(s.session_id)}`;
    const active = s.ended_at === null;
    return h("tr", { class: "session-row", dataset: { sessionId: s.session_id }, onclick: (e) => { if (!e.target.closest("a")) location.hash = href; } },
      h("td", {}, h("a", { href }, s.session_id)), h("td", { class: "session-project" }, s.project || ""), h("td", {}, s.room || ""), h("td", { class: "mono" }, shortTime(s.started_at)),
      h("td", {}, active ? h("span", { class: "pill active" }, "active") : h("span", { class: "mono" }, shortTime(s.ended_at))),
      h("td", { class: "num" }, sessionDuration(s)), h("td", { class: "num" }, s.span_count), h("td", { class: "num" }, s.log_count),
      h("td", { class: `num ${s.error_count ? "error-text" : ""}` }, s.error_count),
      h("td", { class: "num session-tokens" }, used.has(s.session_id) ? used.get(s.session_id).input_tokens + used.get(s.session_id).output_tokens : ""),
      h("td", { class: "num session-cost" }, used.has(s.session_id) ? fmtCost(used.get(s.session_id)) : ""),
      h("td", {}, (s.services || []).join(", ")),
      h("td", {}, active ? h("a", { class: "small", href: `#/live?session=${encodeURIComponent(s.session_id)}`, title: "live view" }, "live") : null));
  };
  const filters = () => ({ room: roomSel.value, project: projectSel.value, since: sinceSel.value, active: mode === "active" ? "true" : mode === "ended" ? "false" : "" });
  let next = null; // the cursor of the page after the rows shown (SPEC 8)
  let shown = 0;
  const showTotal = (n) => { total.textContent = `${shown} of ${n} session${n === 1 ? "" : "s"}`; total.dataset.total = n; };
  // The first pages again (as many rows as are shown), with the total: what auto-refresh reads.
  const load = async () => {
    const limit = Math.min(Math.max(shown, pageSize), MAX_PAGE);
    const usageRead = get("/api/v1/usage", { by: "session", room: roomSel.value, since: sinceSel.value, limit: 10000 }).catch(() => ({ usage: [] }));
    const page = await get("/api/v1/sessions", { ...filters(), limit, count: "true" });
    if (signal.aborted) return;
    tbody.replaceChildren(...page.sessions.map(row));
    // Tokens and cost as they come (the rows are drawn without waiting for them).
    usageRead.then((usage) => {
      if (signal.aborted) return;
      used = new Map(usage.usage.map((u) => [u.session, u]));
      for (const tr of tbody.querySelectorAll("tr.session-row")) {
        const u = used.get(tr.dataset.sessionId);
        if (!u) continue;
        tr.querySelector(".session-tokens").textContent = u.input_tokens + u.output_tokens;
        tr.querySelector(".session-cost").textContent = fmtCost(u);
      }
    });
    shown = page.sessions.length;
    next = page.next;
    if (!shown) tbody.append(h("tr", {}, h("td", { colspan: 13, class: "muted" }, "no sessions")));
    showTotal(page.total);
    more.hidden = !next;
    stamp.textContent = `updated ${new Date().toLocaleTimeString()} (local time)`;
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
  roomsRead.catch(() => {});
  // Scrolled down to the end of the list: the next page comes by itself (the button stays).
  const onScroll = () => {
    if (!more.hidden && !more.disabled && more.getBoundingClientRect().top < window.innerHeight + 200) loadMore().catch(() => {});
  };
  window.addEventListener("scroll", onScroll, { passive: true });
  signal.addEventListener("abort", () => window.removeEventListener("scroll", onScroll));
  await load();
  if (auto.checked) {
    const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
    signal.addEventListener("abort", () => clearInterval(timer));
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
    if (parts[0] === "session" && parts[1]) await sessionPage(root, decodeURIComponent(parts[1]), params, current.signal);
    else if (parts[0] === "trace" && parts[1]) await tracePage(root, parts[1], params, current.signal);
    else if (parts[0] === "search") await searchPage(root, params, current.signal);
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
