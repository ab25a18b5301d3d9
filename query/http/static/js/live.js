// Live view: new spans and logs of a room or session as they arrive, pausable. The server-sent
// events are read through fetch() and parsed here (EventSource can't send the Authorization
// header); with auth on, the stream holds only the token's project. Tokens never go in URLs.
import { get, request } from "./api.js";
import { h, clock, fmtNs, severityClass, setHash } from "./util.js";

const KEEP = 500;

// One SSE frame (the lines of a blank-line separated block) -> {event, data} or null.
export function parseFrame(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (!line || line.startsWith(":")) continue; // ":" lines are comments (heartbeats)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

// The events of a text/event-stream response read with fetch (same headers as every API call).
export async function* sse(path, params, signal) {
  const res = await request(path, params, { headers: { Accept: "text/event-stream" }, signal });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let m;
      while ((m = /\r\n\r\n|\n\n|\r\r/.exec(buf))) {
        const frame = parseFrame(buf.slice(0, m.index));
        buf = buf.slice(m.index + m[0].length);
        if (frame) yield { event: frame.event, data: JSON.parse(frame.data) };
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function spanRow(s) {
  return h("tr", { class: `live-span${s.status_code === "ERROR" ? " error" : ""}`, dataset: { spanId: s.span_id, name: s.name } },
    h("td", { class: "mono" }, clock(s.start_time)),
    h("td", {}, h("a", { href: `#/trace/${s.trace_id}?span=${s.span_id}` }, s.name)),
    h("td", {}, s.service_name || ""), h("td", { class: "num" }, fmtNs(s.duration_ns)),
    h("td", {}, s.status_code === "ERROR" ? h("span", { class: "error-text" }, "ERROR") : s.status_code),
    h("td", {}, h("a", { href: `#/session/${encodeURIComponent(s.session_id)}` }, s.session_id || "")));
}

function logRow(l) {
  return h("tr", { class: "live-log" },
    h("td", { class: "mono" }, clock(l.time)),
    h("td", {}, h("span", { class: `sev ${severityClass(l.severity_text, l.severity_number)}` }, l.severity_text || "")),
    h("td", {}, l.service_name || ""), h("td", { class: "body" }, l.body ?? ""));
}

export async function livePage(root, params, signal) {
  const room = params.get("room") || "";
  const session = params.get("session") || "";
  const q = { room: session ? "" : room, session, limit: 50 };
  const [{ rooms }, snap] = await Promise.all([get("/api/v1/rooms"), get("/api/v1/live", q)]); // side by side
  const roomSel = h("select", { id: "live-room", "aria-label": "room" }, h("option", { value: "" }, "all rooms"), rooms.map((r) => h("option", { value: r.room || "" }, r.room || "(none)")));
  roomSel.value = room;
  roomSel.addEventListener("change", () => setHash("/live", { room: roomSel.value }));
  const state = h("span", { id: "live-state", class: "pill active" }, "connecting…");
  const pause = h("button", { id: "live-pause", class: "btn" }, "Pause");
  const spansBody = h("tbody", { id: "live-spans" });
  const logsBody = h("tbody", { id: "live-logs" });
  const counter = h("span", { class: "muted" });
  root.replaceChildren(
    h("section", { class: "card" }, h("div", { class: "section-head" },
      h("h2", {}, "Live"), session ? h("span", {}, "session ", h("a", { href: `#/session/${encodeURIComponent(session)}` }, session)) : roomSel,
      state, pause, counter)),
    h("div", { class: "two" },
      h("section", { class: "card" }, h("h3", {}, "Spans"), h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ["time", "span", "service", "duration", "status", "session"].map((x) => h("th", {}, x)))), spansBody)),
      h("section", { class: "card" }, h("h3", {}, "Logs"), h("table", { class: "grid logs" },
        h("thead", {}, h("tr", {}, ["time", "level", "service", "body"].map((x) => h("th", {}, x)))), logsBody))));

  let paused = false, held = [], total = 0;
  const seen = new Set();
  const add = (kind, row) => {
    if (kind === "span") {
      if (seen.has(row.span_id)) return;
      seen.add(row.span_id);
    }
    const body = kind === "span" ? spansBody : logsBody;
    body.prepend(kind === "span" ? spanRow(row) : logRow(row));
    while (body.children.length > KEEP) body.lastChild.remove();
    total++;
    counter.textContent = `${total} received`;
  };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    state.textContent = paused ? "paused" : "live";
    state.className = `pill ${paused ? "ended" : "active"}`;
    if (!paused) { for (const [k, r] of held) add(k, r); held = []; }
  });
  for (const s of snap.spans) add("span", s);
  for (const l of snap.logs) add("log", l);
  (async () => {
    while (!signal.aborted) {
      try {
        for await (const { event, data } of sse("/api/v1/live", { room: q.room, session }, signal)) {
          if (event === "ready") { state.textContent = paused ? "paused" : "live"; state.className = `pill ${paused ? "ended" : "active"}`; root.dataset.live = "ready"; continue; }
          if (event !== "span" && event !== "log") continue;
          if (paused) held.push([event, data]);
          else add(event, data);
          if (paused) counter.textContent = `${total} received · ${held.length} held`;
        }
      } catch (e) {
        if (signal.aborted) return;
      }
      state.textContent = "reconnecting…";
      state.className = "pill reconnecting";
      delete root.dataset.live;
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
}
