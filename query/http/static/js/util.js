// Small DOM and formatting helpers.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

// RFC 3339 with nanoseconds -> epoch milliseconds (float, sub-ms kept).
export function tsMs(ts) {
  if (!ts) return NaN;
  const dot = ts.indexOf(".", 19);
  if (dot < 0) return Date.parse(ts);
  const frac = ts.slice(dot + 1).replace("Z", "");
  return Date.parse(ts.slice(0, dot) + "Z") + Number((frac + "000000000").slice(0, 9)) / 1e6;
}

export function shortTime(ts) {
  return ts ? ts.slice(0, 23).replace("T", " ") : "";
}

export function clock(ts) {
  return ts ? ts.slice(11, 23) : "";
}

export function fmtNs(ns) {
  if (ns === null || ns === undefined || Number.isNaN(ns)) return "";
  if (ns < 1e3) return `${Math.round(ns)}ns`;
  if (ns < 1e6) return `${(ns / 1e3).toPrecision(3)}µs`;
  if (ns < 1e9) return `${(ns / 1e6).toPrecision(3)}ms`;
  const s = ns / 1e9;
  if (s < 60) return `${s.toFixed(2)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

export function sessionDuration(s) {
  const end = s.ended_at || s.last_seen_at;
  return end && s.started_at ? fmtNs((tsMs(end) - tsMs(s.started_at)) * 1e6) : "";
}

export function fmtNum(v) {
  if (v === null || v === undefined) return "";
  if (Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-2 && v !== 0)) return v.toExponential(2);
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

export function kvTable(obj) {
  const entries = Object.entries(obj || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return h("p", { class: "muted" }, "none");
  return h("table", { class: "kv" }, entries.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v)))));
}

export function severityClass(text, num) {
  const n = num || { TRACE: 1, DEBUG: 5, INFO: 9, WARN: 13, ERROR: 17, FATAL: 21 }[String(text).toUpperCase()] || 0;
  return n >= 17 ? "sev-error" : n >= 13 ? "sev-warn" : n >= 9 ? "sev-info" : "sev-debug";
}

export function hashParams() {
  const hash = location.hash.slice(1) || "/sessions";
  const [path, query = ""] = hash.split("?");
  return { path, params: new URLSearchParams(query) };
}

export function setHash(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined && x !== null && x !== "") q.append(k, x);
  }
  const s = q.toString();
  const next = `#${path}${s ? "?" + s : ""}`;
  if (location.hash !== next) location.hash = next;
  return next;
}
