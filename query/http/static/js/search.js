// Search: trace rows as Jaeger and Tempo show them (root service and name, duration, span and
// error counts, the matching spans) and a duration-over-time scatter plot to spot outliers; the
// newest traces a page at a time (GET /api/v1/trace_rows, its cursor for the next page).
import { get } from "./api.js";
import { h, shortTime, fmtNs, tsMs, setHash } from "./util.js";

const PAGE = 20; // traces a page holds unless the form's limit says otherwise (as Jaeger and Tempo)
const NS = "http://www.w3.org/2000/svg";
const FIELDS = [
  ["room", "room", "studio"], ["service", "service", "agent"], ["name", "span name contains", "llm"],
  ["min_duration", "min span duration", "250ms, 1.5s"], ["max_duration", "max span duration", "2s"],
  ["attrs", "attributes K=V", "status = error, tool=render"], ["since", "since", "15m, 2h, ISO"], ["until", "until", "ISO time"],
  ["limit", "traces a page", String(PAGE)],
];

// "status = error, tool=render k=v" -> ["status=error", "tool=render", "k=v"]: blanks around "="
// are allowed; pairs are separated by commas or blanks.
export function splitAttrs(text) {
  return text.replace(/\s*=\s*/g, "=").split(/\s*,\s*|\s+/).filter(Boolean);
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Each trace a dot: x its start, y its duration; errors red. A dot opens its trace.
export function scatter(traces, { width = 900, height = 180 } = {}) {
  const pad = { l: 56, r: 12, t: 10, b: 22 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "scatter", id: "search-scatter", role: "group", "aria-label": "trace duration over time (a dot opens its trace)" });
  if (!traces.length) return root;
  const ts = traces.map((t) => tsMs(t.start_time));
  let t0 = Math.min(...ts), t1 = Math.max(...ts);
  if (t1 === t0) { t0 -= 1000; t1 += 1000; }
  const dmax = Math.max(...traces.map((t) => t.duration_ns), 1);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (d) => height - pad.b - (d / dmax) * (height - pad.t - pad.b);
  for (const [d, label] of [[0, "0"], [dmax / 2, fmtNs(dmax / 2)], [dmax, fmtNs(dmax)]]) {
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(d), y2: y(d), class: "grid" }));
    root.append(svg("text", { x: pad.l - 4, y: y(d) + 3, "text-anchor": "end", class: "axis" }, label));
  }
  root.append(svg("text", { x: pad.l, y: height - 6, class: "axis" }, `${new Date(t0).toISOString().slice(11, 19)} UTC`));
  root.append(svg("text", { x: width - pad.r, y: height - 6, "text-anchor": "end", class: "axis" }, `${new Date(t1).toISOString().slice(11, 19)} UTC`));
  traces.forEach((t, i) => {
    const label = `${t.root_service || ""} ${t.root_name || ""} · ${fmtNs(t.duration_ns)} · ${t.span_count} spans${t.error_count ? ` · ${t.error_count} errors` : ""} · ${shortTime(t.start_time)} UTC`;
    const a = svg("a", { href: `#/trace/${t.trace_id}`, class: "dot-link", "aria-label": label });
    const c = svg("circle", { cx: x(ts[i]), cy: y(t.duration_ns), r: 4, class: `dot${t.error_count ? " err" : ""}`, "data-trace-id": t.trace_id, "data-duration-ns": t.duration_ns });
    c.append(svg("title", {}, label));
    a.append(c);
    root.append(a);
  });
  return root;
}

function traceRow(t) {
  const href = `#/trace/${t.trace_id}`;
  const matched = t.spans.map((s, i) => [i ? ", " : "", h("a", { href: `${href}?span=${s.span_id}`, class: "matched-span" }, `${s.name} ${fmtNs(s.duration_ns)}`)]).flat();
  return h("tr", { class: "trace-row", dataset: { traceId: t.trace_id } },
    h("td", { class: "mono" }, shortTime(t.start_time)),
    h("td", {}, h("a", { href, class: "trace-root" }, h("b", {}, t.root_service || "?"), ": ", t.root_name || "(no root)"), h("div", { class: "mono small muted" }, t.trace_id)),
    h("td", { class: "num" }, fmtNs(t.duration_ns)), h("td", { class: "num trace-spans" }, t.span_count),
    h("td", { class: `num trace-errors ${t.error_count ? "error-text" : ""}` }, t.error_count),
    h("td", { class: "trace-matched" }, h("span", { class: "muted" }, `${t.matched}: `), matched, t.matched > t.spans.length ? " …" : ""),
    h("td", {}, (t.rooms || []).join(", ")),
    h("td", {}, (t.sessions || []).flatMap((s, i) => [i ? ", " : "", h("a", { href: `#/session/${encodeURIComponent(s)}` }, s)])));
}

export async function searchPage(root, params, signal) {
  const inputs = {};
  const rooms = h("datalist", { id: "search-rooms" });
  const form = h("form", { class: "search-form", id: "search-form" }, FIELDS.map(([k, label, ph]) => {
    inputs[k] = h("input", { name: k, id: `search-${k}`, placeholder: ph, list: k === "room" ? "search-rooms" : null, autocomplete: k === "room" ? "off" : null,
      value: k === "attrs" ? params.getAll("attrs").join(", ") : params.get(k) || "" });
    return h("label", {}, h("span", {}, label), inputs[k]);
  }), rooms, h("button", { class: "btn primary", type: "submit" }, "Search"));
  get("/api/v1/rooms", { limit: 10000 }).then(({ rooms: list }) => {
    const names = [...new Set(list.map((r) => r.room).filter(Boolean))].sort();
    rooms.replaceChildren(...names.map((n) => h("option", { value: n })));
    form.dataset.rooms = String(names.length);
  }).catch(() => {});
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = {};
    for (const [k] of FIELDS) q[k] = inputs[k].value.trim();
    q.attrs = q.attrs ? splitAttrs(q.attrs) : "";
    q.run = "1";
    setHash("/search", q);
  });
  const results = h("div", { id: "search-results" });
  root.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Trace search"), form), h("section", { class: "card" }, results));
  if (![...params.keys()].length) return results.replaceChildren(h("p", { class: "muted" }, "Traces with a span that matches, newest first. Durations: a bare number is ms; or ns/us/ms/s/m."));
  const q = {};
  for (const [k] of FIELDS) q[k] = k === "attrs" ? params.getAll(k) : params.get(k) || "";
  q.limit = q.limit || String(PAGE);
  let traces = [], next = null;
  const count = h("p", { class: "muted", id: "search-count" });
  const plot = h("div", { class: "scatter-box" });
  const body = h("tbody", {});
  const more = h("button", { class: "btn", id: "search-more", hidden: true }, "more traces");
  const show = (page) => {
    traces = traces.concat(page.traces);
    next = page.next;
    body.append(...page.traces.map(traceRow));
    plot.replaceChildren(scatter(traces));
    const n = traces.length;
    count.textContent = `${n} trace${n === 1 ? "" : "s"}${next ? ` — the newest ${n}; more traces match (the limit of ${q.limit} a page cut the results)` : ""}`;
    count.dataset.count = String(n);
    count.classList.toggle("cut", !!next);
    more.hidden = !next;
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const page = await get("/api/v1/trace_rows", { ...q, cursor: next });
      if (!signal || !signal.aborted) show(page);
    } catch (e) {
      count.textContent = e.message;
    } finally {
      more.disabled = false;
    }
  });
  try {
    const page = await get("/api/v1/trace_rows", q);
    results.replaceChildren(count, plot,
      h("table", { class: "grid traces" },
        h("thead", {}, h("tr", {}, ["start (UTC)", "root", "duration", "spans", "errors", "matched spans", "room", "session"].map((x) => h("th", {}, x)))),
        body),
      h("div", { class: "more-row" }, more));
    show(page);
  } catch (e) {
    results.replaceChildren(h("p", { class: "error-text", id: "search-error" }, e.message));
  }
}
