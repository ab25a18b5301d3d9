// Small time-series charts drawn by hand as SVG.
import { tsMs, fmtNum, shortTime } from "./util.js";

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// A value the chart can draw: the API writes NaN and ±Infinity as the strings "NaN",
// "Infinity", "-Infinity" (and missing ones as null); those are gaps here.
const drawable = ([, v]) => typeof v === "number" && Number.isFinite(v);

// lines: [{label, cls, values: [[t, v], ...]}]
export function lineChart(lines, { width = 300, height = 90 } = {}) {
  const pad = { l: 38, r: 6, t: 6, b: 16 };
  const pts = lines.flatMap((l) => l.values).filter(drawable);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", width, height });
  if (!pts.length) {
    const t = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" });
    t.textContent = "no data";
    root.append(t);
    return root;
  }
  let t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]));
  let v0 = Math.min(0, ...pts.map((p) => p[1])), v1 = Math.max(...pts.map((p) => p[1]));
  if (t1 === t0) { t0 -= 1000; t1 += 1000; }
  if (v1 === v0) v1 = v0 + 1;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - ((v - v0) / (v1 - v0)) * (height - pad.t - pad.b);
  root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v0), y2: y(v0), class: "grid" }));
  for (const [v, anchor] of [[v1, pad.t + 8], [v0, height - pad.b]]) {
    const t = svg("text", { x: pad.l - 4, y: anchor, "text-anchor": "end", class: "axis" });
    t.textContent = fmtNum(v);
    root.append(t);
  }
  for (const line of lines) {
    const vals = line.values.filter(drawable);
    if (!vals.length) continue;
    const d = vals.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    root.append(svg("path", { d, class: `line ${line.cls || ""}` }));
    for (const [t, v] of vals) {
      const c = svg("circle", { cx: x(t), cy: y(v), r: vals.length > 40 ? 1 : 2.2, class: `dot ${line.cls || ""}` });
      const title = svg("title");
      title.textContent = `${line.label}: ${fmtNum(v)} @ ${shortTime(new Date(t).toISOString())}`;
      c.append(title);
      root.append(c);
    }
  }
  return root;
}

// One series of /metric_series -> chart lines.
export function seriesLines(s) {
  const t = (p) => tsMs(p.time);
  if (s.type === "histogram" || s.type === "exponential_histogram" || s.type === "summary") {
    return {
      main: [
        { label: "p50", cls: "p50", values: s.points.map((p) => [t(p), p.p50]) },
        { label: "p99", cls: "p99", values: s.points.map((p) => [t(p), p.p99]) },
      ],
      count: [{ label: "count", cls: "count", values: s.points.map((p) => [t(p), p.count]) }],
    };
  }
  return { main: [{ label: s.name, cls: "value", values: s.points.map((p) => [t(p), p.value]) }] };
}
