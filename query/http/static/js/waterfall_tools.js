// The waterfall's tool bar: find (text, count, next/previous), collapse/expand all, zoom in, out
// and reset (and drag on the time axis to zoom into a range), the critical path switch.
import { h } from "./util.js";

let seq = 0;

export function waterfallTools(wf) {
  const n = ++seq;
  const input = h("input", { type: "search", id: `wf-find-${n}`, class: "wf-find", placeholder: "find spans", "aria-label": "find spans by name or service", autocomplete: "off" });
  const count = h("span", { class: "muted small wf-count", role: "status" });
  const btn = (label, title, onclick, extra = {}) => h("button", { type: "button", class: "btn small", title, "aria-label": title, onclick, ...extra }, label);
  const show = () => {
    const m = wf.matches.length;
    count.textContent = input.value.trim() ? (m ? `${wf.current >= 0 ? wf.current + 1 : 0} of ${m}` : "no match") : "";
  };
  const go = (dir) => { wf.step(dir); show(); };
  let typing = null;
  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { wf.find(input.value); wf.findText = input.value; show(); }, 120);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      clearTimeout(typing);
      if (wf.findText !== input.value) wf.find(input.value);
      wf.findText = input.value;
      go(e.shiftKey ? -1 : 1);
    } else if (e.key === "Escape" && input.value) {
      e.preventDefault();
      input.value = "";
      wf.find("");
      show();
    }
  });
  const critical = btn("critical path", "highlight the critical path of each trace", () => {
    const on = critical.getAttribute("aria-pressed") !== "true";
    critical.setAttribute("aria-pressed", String(on));
    wf.showCritical(on);
  }, { "aria-pressed": "false", class: "btn small wf-critical" });
  const zoomBy = (factor) => {
    const { from, to } = wf.zoom;
    const mid = (from + to) / 2, half = Math.min(0.5, ((to - from) * factor) / 2);
    const a = Math.max(0, Math.min(mid - half, 1 - 2 * half));
    wf.setZoom(a, a + 2 * half);
  };
  const reset = btn("reset zoom", "show each trace's whole time range", () => wf.setZoom(0, 1), { class: "btn small wf-zoom-reset", disabled: true });
  const el = h("div", { class: "wf-tools", role: "toolbar", "aria-label": "waterfall tools" },
    input, btn("↑", "previous match (Shift+Enter)", () => go(-1), { class: "btn small wf-prev" }), btn("↓", "next match (Enter)", () => go(1), { class: "btn small wf-next" }), count,
    btn("collapse all", "collapse every subtree", () => wf.collapseAll(true), { class: "btn small wf-collapse-all" }),
    btn("expand all", "expand every subtree", () => wf.collapseAll(false), { class: "btn small wf-expand-all" }),
    btn("+", "zoom in (time)", () => zoomBy(0.5), { class: "btn small wf-zoom-in" }),
    btn("−", "zoom out (time)", () => zoomBy(2), { class: "btn small wf-zoom-out" }), reset, critical);
  dragToZoom(wf);
  return { el, input, zoomChanged: () => { reset.disabled = wf.zoom.from === 0 && wf.zoom.to === 1; } };
}

// Drag across the time axis: the range dragged over becomes the view.
function dragToZoom(wf) {
  const axis = wf.axis;
  let start = null, box = null;
  const frac = (e) => {
    const r = axis.getBoundingClientRect();
    return Math.max(0, Math.min(1, (e.clientX - r.left) / r.width));
  };
  axis.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    start = frac(e);
    box = h("div", { class: "wf-zoom-sel", style: { left: `${start * 100}%`, width: "0" } });
    axis.append(box);
    axis.setPointerCapture(e.pointerId);
  });
  axis.addEventListener("pointermove", (e) => {
    if (start === null) return;
    const x = frac(e);
    Object.assign(box.style, { left: `${Math.min(start, x) * 100}%`, width: `${Math.abs(x - start) * 100}%` });
  });
  axis.addEventListener("pointerup", (e) => {
    if (start === null) return;
    const a = Math.min(start, frac(e)), b = Math.max(start, frac(e));
    start = null;
    box.remove();
    if (b - a < 0.01) return; // a click, not a drag
    const { from, to } = wf.zoom;
    wf.setZoom(from + a * (to - from), from + b * (to - from));
  });
}
