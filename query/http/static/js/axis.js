// "Nice" time-axis ticks: steps of 1, 2 or 5 × 10^n, labelled in ns/µs/ms/s as fits the step.

const UNITS = [[1000, "s"], [1, "ms"], [1e-3, "µs"], [1e-6, "ns"]]; // [ms per unit, label]

// The smallest 1/2/5 × 10^n step (ms) that puts at most maxCount ticks (0 included) on
// [0, durationMs]; with maxCount 8 that is 4 to 8 ticks.
export function niceStep(durationMs, maxCount = 8) {
  const span = durationMs > 0 ? durationMs : 1;
  let exp = Math.floor(Math.log10(span / maxCount)) - 1;
  for (;;) {
    for (const m of [1, 2, 5]) {
      const step = m * 10 ** exp;
      if (Math.floor(span / step + 1e-9) + 1 <= maxCount) return { step };
    }
    exp++;
  }
}

// Ticks on [0, durationMs]: [{ t (ms), label }], the first at 0; each label in the largest unit
// it is at least 1 of, with the decimals the step needs there ("800 ms", "1 s", "1.2 s").
export function niceTicks(durationMs, maxCount = 8) {
  const span = durationMs > 0 ? durationMs : 1;
  const { step } = niceStep(span, maxCount);
  const ticks = [];
  for (let i = 0; i * step <= span * (1 + 1e-9); i++) {
    const t = i * step;
    ticks.push({ t, label: i === 0 ? "0" : label(t, step) });
  }
  return ticks;
}

function label(t, step) {
  const [unitMs, unit] = UNITS.find(([ms]) => t >= ms * (1 - 1e-9)) || UNITS[UNITS.length - 1];
  const decimals = Math.max(0, -Math.floor(Math.log10(step / unitMs) + 1e-9));
  return `${Number((t / unitMs).toFixed(decimals))} ${unit}`;
}

// How many ticks fit a track of this many pixels (labels need ~70 px), within 3..8.
export function maxTicksFor(widthPx) {
  return Math.max(3, Math.min(8, Math.floor((widthPx || 600) / 70)));
}

// Ticks on [fromMs, toMs] of a zoomed view: [{ t (ms from the trace's start), label }], at the
// multiples of a nice step that fall inside; from 0 it is niceTicks.
export function rangeTicks(fromMs, toMs, maxCount = 8) {
  if (fromMs <= 0) return niceTicks(toMs, maxCount);
  const { step } = niceStep(toMs - fromMs, maxCount);
  const ticks = [];
  for (let i = Math.ceil(fromMs / step - 1e-9); i * step <= toMs * (1 + 1e-9); i++) ticks.push({ t: i * step, label: label(i * step, step) });
  return ticks;
}

// Value-axis ticks covering [lo, hi]: multiples of a 1/2/5 × 10^n step, about `count` intervals,
// the first ≤ lo and the last ≥ hi.
export function valueTicks(lo, hi, count = 4) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count, exp = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * exp).find((s) => s >= raw * (1 - 1e-9));
  const ticks = [];
  for (let i = Math.floor(lo / step + 1e-9); ; i++) {
    ticks.push(Number((i * step).toPrecision(12)));
    if (i * step >= hi * (1 - 1e-12) - 1e-12) break;
  }
  return ticks;
}

const CLOCK_STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);

// Time-axis ticks on [t0, t1] (epoch ms): round UTC clock times at the smallest step giving at
// most maxCount ticks; labels HH:MM, HH:MM:SS under a minute's step, SS.mmm under a second's,
// or the date for days.
export function timeTicks(t0, t1, maxCount = 4) {
  const step = CLOCK_STEPS.find((s) => Math.floor(t1 / s) - Math.ceil(t0 / s) + 1 <= maxCount) || 86400000 * Math.ceil((t1 - t0) / 86400000 / maxCount);
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const iso = new Date(t).toISOString();
    ticks.push({ t, label: step >= 86400000 ? iso.slice(5, 10) : step < 1000 ? iso.slice(17, 23) : step < 60000 ? iso.slice(11, 19) : iso.slice(11, 16) });
  }
  return ticks;
}
