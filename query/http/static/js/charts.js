// Small time-series charts drawn by hand as SVG: a time axis (UTC clock ticks), y ticks at nice
// steps with the unit, and a read-out of the point nearest the pointer (or the arrow keys when
// the chart has the focus): its series, exact value and time.
import { tsMs, fmtNum } from "./util.js";
import { valueTicks, timeTicks } from "./axis.js";

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}
function text(x, y, content, attrs = {}) {
  const t = svg("text", { x, y, ...attrs });
  t.textContent = content;
  return t;
}

// A value the chart can draw: the API writes NaN and ±Infinity as the strings "NaN",
// "Infinity", "-Infinity" (and missing ones as null); those are gaps here.
const drawable = ([, v]) => typeof v === "number" && Number.isFinite(v);
const iso = (t) => new Date(t).toISOString().replace("T", " ").replace("Z", " UTC");

// lines: [{label, cls, values: [[t (epoch ms), v], ...]}], drawn in order (the last on top).
export function lineChart(lines, { width = 300, height = 120, unit = "", title = "chart" } = {}) {
  const pad = { l: 44, r: 8, t: 16, b: 18 };
  const pts = lines.flatMap((l) => l.values.filter(drawable).map(([t, v]) => ({ t, v, line: l })));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", width, height, role: "img", "aria-label": title });
  if (!pts.length) {
    root.append(text(width / 2, height / 2, "no data", { "text-anchor": "middle", class: "axis" }));
    return root;
  }
  let t0 = Math.min(...pts.map((p) => p.t)), t1 = Math.max(...pts.map((p) => p.t));
  if (t1 === t0) { t0 -= 1000; t1 += 1000; }
  const ys = valueTicks(Math.min(0, ...pts.map((p) => p.v)), Math.max(...pts.map((p) => p.v)), height > 80 ? 4 : 2);
  const v0 = ys[0], v1 = ys[ys.length - 1];
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - ((v - v0) / (v1 - v0)) * (height - pad.t - pad.b);
  for (const v of ys) {
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    root.append(text(pad.l - 4, y(v) + 3, fmtNum(v), { "text-anchor": "end", class: "axis ytick" }));
  }
  if (unit) root.append(text(2, 9, unit, { class: "axis unit" }));
  for (const tick of timeTicks(t0, t1, Math.max(2, Math.floor((width - pad.l) / 70)))) {
    root.append(svg("line", { x1: x(tick.t), x2: x(tick.t), y1: height - pad.b, y2: height - pad.b + 3, class: "grid" }));
    root.append(text(x(tick.t), height - 4, tick.label, { "text-anchor": "middle", class: "axis xtick", "data-t": String(tick.t) }));
  }
  for (const line of lines) {
    const vals = line.values.filter(drawable);
    if (!vals.length) continue;
    const d = vals.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    root.append(svg("path", { d, class: `line ${line.cls || ""}` }));
    for (const [t, v] of vals) root.append(svg("circle", { cx: x(t), cy: y(v), r: vals.length > 40 ? 1 : 2.2, class: `dot ${line.cls || ""}` }));
  }
  hover(root, pts, { x, y, pad, width, height, unit });
  return root;
}

// The read-out: the point nearest the pointer in time (and then in value), marked and written
// at the top; the arrow keys step through the points when the chart has the focus.
function hover(root, pts, { x, y, pad, width, height, unit }) {
  pts.sort((a, b) => a.t - b.t || a.v - b.v);
  const mark = svg("g", { class: "hover", visibility: "hidden" });
  const rule = svg("line", { y1: pad.t, y2: height - pad.b, class: "hover-line" });
  const dot = svg("circle", { r: 3.5, class: "hover-dot" });
  const read = text(width - pad.r, 10, "", { "text-anchor": "end", class: "axis read" });
  mark.append(rule, dot);
  root.append(mark, read);
  root.setAttribute("tabindex", "0");
  let at = -1;
  const show = (i) => {
    at = Math.max(0, Math.min(pts.length - 1, i));
    const p = pts[at];
    for (const [k, v] of [["x1", x(p.t)], ["x2", x(p.t)]]) rule.setAttribute(k, v);
    dot.setAttribute("cx", x(p.t));
    dot.setAttribute("cy", y(p.v));
    mark.setAttribute("visibility", "visible");
    read.textContent = `${p.line.label} ${fmtNum(p.v)}${unit ? " " + unit : ""} · ${iso(p.t).slice(11, 23)}`;
    Object.assign(root.dataset, { hoverValue: String(p.v), hoverTime: new Date(p.t).toISOString(), hoverLabel: p.line.label });
  };
  root.addEventListener("pointermove", (e) => {
    const box = root.getBoundingClientRect();
    const px = ((e.clientX - box.left) / box.width) * width, py = ((e.clientY - box.top) / box.height) * height;
    let best = 0, dist = Infinity;
    pts.forEach((p, i) => {
      const d = Math.abs(x(p.t) - px) * 1000 + Math.abs(y(p.v) - py);
      if (d < dist) { dist = d; best = i; }
    });
    show(best);
  });
  root.addEventListener("pointerleave", () => mark.setAttribute("visibility", "hidden"));
  root.addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1, Home: -Infinity, End: Infinity }[e.key];
    if (step === undefined) return;
    e.preventDefault();
    show(at < 0 ? (step > 0 ? 0 : pts.length - 1) : at + step);
  });
}

// One series of /metric_series -> chart lines (p99 first, so p50 is drawn over it), and the
// unit of the y axis: a delta sum (a counter sent as increments) is drawn as its rate per second.
export function seriesLines(s) {
  const t = (p) => tsMs(p.time);
  if (s.type === "histogram" || s.type === "exponential_histogram" || s.type === "summary") {
    return {
      unit: s.unit || "",
      main: [
        { label: "p99", cls: "p99", values: s.points.map((p) => [t(p), p.p99]) },
        { label: "p50", cls: "p50", values: s.points.map((p) => [t(p), p.p50]) },
      ],
      count: [{ label: "count", cls: "count", values: s.points.map((p) => [t(p), p.count]) }],
    };
  }
  if (s.type === "sum" && s.temporality === "delta") {
    const unit = `${s.unit && s.unit !== "1" ? s.unit : ""}/s`;
    return { unit, rate: true, main: [{ label: "rate", cls: "value", values: s.points.map((p) => [t(p), p.rate]) }] };
  }
  return { unit: s.unit && s.unit !== "1" ? s.unit : "", main: [{ label: s.name, cls: "value", values: s.points.map((p) => [t(p), p.value]) }] };
}
