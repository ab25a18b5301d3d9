// Usage page (SPEC 11): totals, tokens and cost over time, top models, rooms and tools with
// tool-call latency and error rate; every row links to the sessions or spans behind it.
import { get } from "./api.js";
import { h, tsMs } from "./util.js";
import { lineChart } from "./charts.js";

const SINCE = [["", "any time"], ["1h", "last hour"], ["6h", "last 6 hours"], ["24h", "last day"], ["7d", "last week"], ["30d", "last 30 days"]];

export const fmtCost = (r) => (r.llm_calls || r.input_tokens || r.output_tokens ? (r.cost_usd === null ? "unpriced" : `$${r.cost_usd.toFixed(4)}`) : "");
const pct = (v) => (v === null || v === undefined ? "" : `${(v * 100).toFixed(1)}%`);
const ms = (v) => (v === null || v === undefined ? "" : `${v.toFixed(1)} ms`);

// Where a row's records are: its sessions (a room), its session, or its spans (search).
function link(by, key) {
  if (key === null) return "#/search";
  if (by === "room") return `#/sessions?room=${encodeURIComponent(key)}`;
  if (by === "session") return `#/session/${encodeURIComponent(key)}`;
  const attr = by === "model" ? "gen_ai.request.model" : "gen_ai.tool.name";
  return `#/search?attrs=${encodeURIComponent(`${attr}=${key}`)}&run=1`;
}

async function allRows(q) {
  let rows = [], page = await get("/api/v1/usage", { ...q, limit: 1000 });
  rows = rows.concat(page.usage);
  while (page.next) {
    page = await get("/api/v1/usage", { ...q, limit: 1000, cursor: page.next });
    rows = rows.concat(page.usage);
  }
  return { ...page, usage: rows };
}

function table(by, rows, llm) {
  const head = llm ? [by, "calls", "input", "output", "cost"] : [by, "calls", "errors", "p50", "p95"];
  return h("table", { class: "grid usage", dataset: { by } },
    h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", { class: "usage-row", dataset: { key: r[by] ?? "" } },
      h("td", {}, h("a", { href: link(by, r[by]) }, r[by] ?? "(none)")),
      ...(llm
        ? [h("td", { class: "num" }, r.llm_calls), h("td", { class: "num" }, r.input_tokens), h("td", { class: "num" }, r.output_tokens),
           h("td", { class: `num ${r.cost_usd === null ? "error-text" : ""}` }, fmtCost(r))]
        : [h("td", { class: "num" }, r.tool_calls), h("td", { class: `num ${r.tool_errors ? "error-text" : ""}` }, pct(r.tool_error_rate)),
           h("td", { class: "num" }, ms(r.tool_p50_ms)), h("td", { class: "num" }, ms(r.tool_p95_ms))])))));
}

function top(rows, field) {
  return rows.filter((r) => r[field]).sort((a, b) => b[field] - a[field]).slice(0, 10);
}

export async function usagePage(root, params) {
  const since = h("select", { id: "usage-since", "aria-label": "time range" }, SINCE.map(([v, label]) => h("option", { value: v }, label)));
  since.value = params.get("since") || "";
  since.addEventListener("change", () => { location.hash = `#/usage${since.value ? "?since=" + since.value : ""}`; });
  const q = since.value ? { since: since.value } : {};
  const [models, rooms, tools, hours] = await Promise.all(["model", "room", "tool", "hour"].map((by) => allRows({ ...q, by })));
  const t = models.totals;
  const item = (k, v, id) => h("div", { class: "stat" }, h("div", { class: "stat-k" }, k), h("div", { class: "stat-v", id }, v));
  const series = (field) => hours.usage.map((r) => [tsMs(r.hour), r[field]]);
  root.replaceChildren(
    h("section", { class: "card" },
      h("div", { class: "section-head" }, h("h2", {}, "Usage"), since),
      h("div", { class: "stats", id: "usage-totals" },
        item("LLM calls", t.llm_calls, "usage-calls"), item("input tokens", t.input_tokens, "usage-input"),
        item("output tokens", t.output_tokens, "usage-output"), item("cost", fmtCost(t) || "$0.0000", "usage-cost"),
        item("tool calls", t.tool_calls, "usage-tools"), item("tool errors", `${t.tool_errors} (${pct(t.tool_error_rate) || "0%"})`, "usage-tool-errors")),
      models.unpriced_models.length
        ? h("p", { class: "muted", id: "usage-unpriced" }, `unpriced (no [usage.prices] entry): ${models.unpriced_models.map((m) => m ?? "(no model)").join(", ")}`)
        : null),
    h("div", { class: "charts" },
      h("figure", { class: "chart-box", dataset: { chart: "tokens" } }, h("figcaption", {}, h("b", {}, "tokens per hour"), " input · output"),
        lineChart([{ label: "input", cls: "p50", values: series("input_tokens") }, { label: "output", cls: "p99", values: series("output_tokens") }], { unit: "tokens", title: "tokens per hour" })),
      h("figure", { class: "chart-box", dataset: { chart: "cost" } }, h("figcaption", {}, h("b", {}, "cost per hour"), " USD (priced models)"),
        lineChart([{ label: "cost", cls: "count", values: series("cost_usd") }], { unit: "USD", title: "cost per hour" }))),
    h("div", { class: "two" },
      h("section", { class: "card" }, h("h3", {}, "Models"), table("model", top(models.usage, "input_tokens"), true)),
      h("section", { class: "card" }, h("h3", {}, "Rooms"), table("room", top(rooms.usage, "input_tokens"), true))),
    h("section", { class: "card" }, h("h3", {}, "Tools"), table("tool", top(tools.usage, "tool_calls"), false)));
}
