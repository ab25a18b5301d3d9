// An active session's page follows its records: the Live page's server-sent events, filtered to
// the session, batched (a redraw at most every BATCH_MS), plus the summary and the metric charts
// read again every REFRESH_MS. It stops when the session has ended or the page is left.
import { sse } from "./live.js";
import { h } from "./util.js";

const BATCH_MS = 400;
const REFRESH_MS = 5000;
const RETRY_MS = 2000;

// handlers: spans(list), logs(list), catchUp() after each (re)connect (records that arrived
// before the stream was open), refresh() -> the session now (its summary).
export function followSession(root, id, signal, handlers) {
  const stop = new AbortController();
  signal.addEventListener("abort", () => stop.abort(), { once: true });
  const pill = h("span", { class: "pill follow-connecting", id: "session-live", role: "status" }, "connecting…");
  const bar = h("div", { class: "follow-bar" }, pill, h("span", { class: "muted small" }, " new spans, logs and metrics appear as they arrive"));
  root.prepend(bar);
  const state = (name, text) => {
    pill.className = `pill follow-${name}`;
    pill.textContent = text;
    root.dataset.follow = name;
  };
  let spans = [], logs = [], timer = null, updates = 0;
  const flush = () => {
    timer = null;
    if (spans.length) handlers.spans(spans.splice(0));
    if (logs.length) handlers.logs(logs.splice(0));
    root.dataset.updates = String(++updates);
  };
  (async () => {
    while (!stop.signal.aborted) {
      try {
        for await (const { event, data } of sse("/api/v1/live", { session: id }, stop.signal)) {
          if (event === "ready") {
            await handlers.catchUp().catch(() => {});
            state("live", "live");
            continue;
          }
          if (event === "span") spans.push(data);
          else if (event === "log") logs.push(data);
          else continue;
          timer = timer || setTimeout(flush, BATCH_MS);
        }
      } catch {
        if (stop.signal.aborted) return;
      }
      if (stop.signal.aborted) return;
      state("reconnecting", "reconnecting…");
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  })();
  const tick = setInterval(async () => {
    const now = await handlers.refresh().catch(() => null);
    if (now && now.ended_at !== null && now.ended_at !== undefined) {
      clearInterval(tick);
      stop.abort();
      state("ended", "ended");
      bar.lastChild.textContent = " the session has ended";
    }
  }, REFRESH_MS);
  stop.signal.addEventListener("abort", () => clearInterval(tick), { once: true });
}
