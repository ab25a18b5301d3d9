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
