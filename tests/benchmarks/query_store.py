"""The query benchmark's stores (tests/benchmarks/query.py): the data's shape, hand-encoded OTLP
protobuf requests, and the build through the collector's write path.

Two shapes of the same telemetry (1,000 rooms, ~20,000 explicit sessions, 20 services, traces of
~10 spans, ~3 % errors, log-normal durations, 10 attributes a span, a log record per ~5 spans):

* **archive** — start times over the 30 days before the build, sessions of 5 min-8 h;
* **burst** — start times all in the 60 minutes before the build (``minutes``), sessions of
  5-55 min (a twelfth to eleven twelfths of the window), and one big session holding a tenth of
  the spans (a 1 M-span session at 10 M), for the ``session traces S -o jsonl`` memory
  measure: the newest hour as people debug it.

The compaction job runs beside the build on the data's clock (the newest start sent so far),
so the store ends as a live collector's would right after the data arrived: the spans older
than ``compaction.after`` moved into span_archive, the newer ones still in span_data. After
the data, the job runs again until a run does nothing (at most five runs: the settled spans
short of a range's worth move after ``compaction.wait``, free space is given back), as a live
collector's job would within minutes; the build prints the file's size before and after.
"""

from __future__ import annotations

import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.decode import decode_body  # noqa: E402
from collector.errors import Overloaded  # noqa: E402
from collector.sessions import SessionTracker  # noqa: E402
from collector.settings import load_settings  # noqa: E402
from collector.store import create_store  # noqa: E402
from collector.store.maintenance.compaction import Compaction  # noqa: E402
from collector.tagging import Tagger  # noqa: E402
from collector.writer import Writer  # noqa: E402

DAY_NS = 86_400 * 10**9

# -- protobuf wire format, by hand -----------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (tag byte already includes wire type 2)."""
    return bytes([tag]) + varint(len(payload)) + payload


def any_value(v: object) -> bytes:
    if isinstance(v, bool):
        return b"\x10" + varint(int(v))
    if isinstance(v, int):
        return b"\x18" + varint(v)
    return ld(0x0A, str(v).encode())


def kv(key: str, v: object, tag: int) -> bytes:
    """A KeyValue as a repeated field ``tag`` of its parent."""
    return ld(tag, ld(0x0A, key.encode()) + ld(0x12, any_value(v)))


SERVICES = [f"svc-{name}" for name in (
    "gateway", "planner", "llm", "search", "browser", "memory", "auth", "billing", "files",
    "voice", "vision", "scheduler", "notifier", "sandbox", "db", "cache", "queue", "router",
    "embed", "eval",
)]  # fmt: skip
SPAN_NAMES = [
    [f"{s[4:]}.{op}" for op in ("handle", "call", "fetch", "plan", "store")] for s in SERVICES
]
TOOLS = [
    "search",
    "browse",
    "python",
    "shell",
    "read_file",
    "write_file",
    "sql",
    "email",
    "calendar",
    "image",
]
TOOL_P = np.array([0.15, 0.12, 0.12, 0.1, 0.1, 0.1, 0.09, 0.08, 0.07, 0.07])
MODELS = ["gpt-5", "gpt-5-mini", "claude-opus", "claude-haiku", "llama-70b"]
METHODS = ["GET", "POST", "PUT", "DELETE"]
REGIONS = ["us-east", "us-west", "eu-west", "eu-central", "ap-south"]
STATUS_CODES = [200] * 16 + [201, 204, 301, 400, 401, 404, 429, 500, 502, 503]
LOG_BODIES = [
    "tool call finished", "model responded", "cache miss for key", "retrying request",
    "user message received", "plan updated", "context window trimmed", "file written",
    "rate limited by upstream", "connection reset", "step completed", "agent idle",
]  # fmt: skip
SEVERITIES = [(5, "DEBUG"), (9, "INFO"), (13, "WARN"), (17, "ERROR")]

# Pre-encoded span pieces: attribute KeyValues (span field 9), names, kinds, statuses.
A = 0x4A
TOOL_KV = [kv("tool", t, A) for t in TOOLS]
LOG_TOOL_KV = [kv("tool", t, 0x32) for t in TOOLS]  # LogRecord.attributes
MODEL_KV = [kv("llm.model", m, A) for m in MODELS]
METHOD_KV = [kv("http.method", m, A) for m in METHODS]
REGION_KV = [kv("cloud.region", r, A) for r in REGIONS]
HTTP_KV = [kv("http.status_code", c, A) for c in STATUS_CODES]
USER_KV = [kv("user.id", f"user-{i:05d}", A) for i in range(5000)]
TOKENS_KV = [kv("llm.tokens", i * 7, A) for i in range(3000)]
STEP_KV = [kv("agent.step", i, A) for i in range(30)]
# GenAI conventions on svc-llm's "llm.call" spans (an LLM call: operation, provider, model,
# token counts) and svc-search's "search.call" spans (a tool call), for roomscope usage.
PROVIDERS = ["openai", "openai", "anthropic", "anthropic", "meta"]
GENAI_LLM_KV = [
    kv("gen_ai.operation.name", "chat", A) + kv("gen_ai.provider.name", p, A)
    + kv("gen_ai.request.model", m, A)
    for m, p in zip(MODELS, PROVIDERS, strict=True)
]  # fmt: skip
INPUT_KV = [kv("gen_ai.usage.input_tokens", 50 + i * 11, A) for i in range(3000)]
OUTPUT_KV = [kv("gen_ai.usage.output_tokens", 10 + i * 3, A) for i in range(3000)]
GENAI_TOOL_KV = [
    kv("gen_ai.operation.name", "execute_tool", A) + kv("gen_ai.tool.name", t, A) for t in TOOLS
]
LLM_SVC, TOOL_SVC, CALL = SERVICES.index("svc-llm"), SERVICES.index("svc-search"), 1
CACHE_KV = [kv("cache.hit", b, A) for b in (False, True)]
NAME_F = [[ld(0x2A, n.encode()) for n in names] for names in SPAN_NAMES]
KIND_F = [b"\x30\x01", b"\x30\x02", b"\x30\x03"]
STATUS_OK = ld(0x7A, b"\x18\x01")
STATUS_UNSET = b""
STATUS_ERR = [
    ld(0x7A, ld(0x12, m.encode()) + b"\x18\x02")
    for m in ("timeout", "upstream 500", "tool failed", "rate limited")
]
SCOPE = ld(0x0A, ld(0x0A, b"roomscope.bench") + ld(0x12, b"1.0"))
TIMES = struct.Struct("<BQBQ")
LOG_T = struct.Struct("<BQ")


class Plan:
    """The whole data set's shape, drawn up front (numpy): sessions and traces in time order."""

    def __init__(
        self,
        n_spans: int,
        n_rooms: int,
        seed: int,
        end_ns: int,
        shape: str = "archive",
        minutes: int = 60,
    ):
        rng = self.rng = np.random.default_rng(seed)
        scale = n_spans / 10_000_000
        self.n_sessions = n_sessions = max(10, round(20_000 * scale))
        window = minutes * 60e9
        if shape == "burst":  # the last hour (``minutes``): sessions of 5-55 min in an hour
            start_ns = end_ns - int(window)
            dur = np.clip(
                rng.lognormal(np.log(window / 3), 0.6, n_sessions), window / 12, window * 11 / 12
            )
            margin = int(window / 60)
        else:  # 30 days
            start_ns = end_ns - 30 * DAY_NS
            dur = np.clip(rng.lognormal(np.log(3600e9), 0.8, n_sessions), 300e9, 8 * 3600e9)
            margin = 60 * 10**9
        self.s_start = rng.integers(start_ns, end_ns - dur.astype(np.int64) - margin)
        self.s_dur = dur.astype(np.int64)
        self.s_room = rng.integers(0, n_rooms, n_sessions)
        self.s_ids = [f"sess-{rng.bytes(8).hex()}" for _ in range(n_sessions)]
        self.s_conv = [kv("conversation.id", f"conv-{i:06d}", A) for i in range(n_sessions)]
        n_traces = n_spans // 10
        self.t_session = rng.integers(0, n_sessions, n_traces)
        self.t_start = self.s_start[self.t_session] + (
            rng.random(n_traces) * self.s_dur[self.t_session]
        ).astype(np.int64)
        sizes = np.clip(rng.poisson(9, n_traces) + 1, 1, 40)
        # Make the total exact: trim or pad the last traces.
        diff = n_spans - int(sizes.sum())
        i = 0
        while diff:
            step = 1 if diff > 0 else -1
            if sizes[i] + step >= 1:
                sizes[i] += step
                diff -= step
            i = (i + 1) % n_traces
        self.t_size = sizes
        if shape == "burst":  # session 0 is big: a tenth of the traces, over the whole hour
            self.s_start[0], self.s_dur[0] = start_ns, int(window * 59 / 60)
            self.t_session[rng.random(n_traces) < 0.1] = 0
            self.t_start = self.s_start[self.t_session] + (
                rng.random(n_traces) * self.s_dur[self.t_session]
            ).astype(np.int64)
        # Each session runs 4 of the 20 services (a room's agent and its tools).
        s_services = np.stack([rng.permutation(len(SERVICES))[:4] for _ in range(n_sessions)])
        self.t_service = s_services[self.t_session, rng.integers(0, 4, n_traces)]
        order = np.argsort(self.t_start, kind="stable")
        self.t_session, self.t_start = self.t_session[order], self.t_start[order]
        self.t_size, self.t_service = self.t_size[order], self.t_service[order]
        self.n_traces = n_traces
        self.resources: dict[tuple[int, int], bytes] = {}


def build_chunk(
    plan: Plan, lo: int, hi: int, rooms: list[bytes], log_every: float
) -> tuple[bytes, bytes, int, int]:
    """Traces ``lo:hi`` as one trace request and one logs request (bodies); span and log counts."""
    rng = plan.rng
    sizes = plan.t_size[lo:hi]
    n = int(sizes.sum())
    ids = rng.bytes(8 * n)
    tids = rng.bytes(16 * (hi - lo))
    dur = np.minimum(rng.lognormal(np.log(40e6), 1.7, n), 600e9).astype(np.int64)
    offs = (rng.random(n) * 2e9).astype(np.int64)
    tool = rng.choice(len(TOOLS), n, p=TOOL_P)
    model = rng.integers(0, len(MODELS), n)
    method = rng.integers(0, len(METHODS), n)
    region = rng.integers(0, len(REGIONS), n)
    http = rng.integers(0, len(STATUS_CODES), n)
    user = rng.integers(0, len(USER_KV), n)
    tokens = rng.integers(0, len(TOKENS_KV), n)
    step = rng.integers(0, len(STEP_KV), n)
    cache = rng.integers(0, 2, n)
    name = rng.integers(0, 5, n)
    kind = rng.integers(0, 3, n)
    err = rng.random(n) < 0.03
    errmsg = rng.integers(0, len(STATUS_ERR), n)
    ok = rng.random(n) < 0.5
    has_log = rng.random(n) < 1.0 / log_every
    sev = rng.choice(3, n, p=[0.05, 0.85, 0.10])
    body = rng.integers(0, len(LOG_BODIES), n)
    res_spans: list[bytes] = []
    res_logs: list[bytes] = []
    n_logs = 0
    k = 0
    for t in range(lo, hi):
        sess = int(plan.t_session[t])
        svc = int(plan.t_service[t])
        resource = plan.resources.get((sess, svc))
        if resource is None:
            resource = plan.resources[sess, svc] = ld(
                0x0A,
                kv("service.name", SERVICES[svc], 0x0A)
                + rooms[int(plan.s_room[sess])]
                + kv("session.id", plan.s_ids[sess], 0x0A)
                + kv("host.name", f"node-{svc % 7}", 0x0A),
            )
        tid = tids[(t - lo) * 16 : (t - lo + 1) * 16]
        t0 = int(plan.t_start[t])
        names = NAME_F[svc]
        conv = plan.s_conv[sess]
        spans: list[bytes] = []
        logs: list[bytes] = []
        root = ids[k * 8 : k * 8 + 8]
        for j in range(int(sizes[t - lo])):
            sid = ids[k * 8 : k * 8 + 8]
            start = t0 if j == 0 else t0 + int(offs[k])
            end = start + int(dur[k])
            status = STATUS_ERR[errmsg[k]] if err[k] else (STATUS_OK if ok[k] else STATUS_UNSET)
            span = b"".join(
                (
                    b"\x0a\x10",
                    tid,
                    b"\x12\x08",
                    sid,
                    b"" if j == 0 else b"\x22\x08" + root,
                    names[name[k]],
                    KIND_F[kind[k]],
                    TIMES.pack(0x39, start, 0x41, end),
                    TOOL_KV[tool[k]],
                    MODEL_KV[model[k]],
                    METHOD_KV[method[k]],
                    REGION_KV[region[k]],
                    HTTP_KV[http[k]],
                    USER_KV[user[k]],
                    TOKENS_KV[tokens[k]],
                    STEP_KV[step[k]],
                    CACHE_KV[cache[k]],
                    conv,
                    (GENAI_LLM_KV[model[k]] + INPUT_KV[tokens[k]] + OUTPUT_KV[tokens[k]])
                    if svc == LLM_SVC and name[k] == CALL
                    else GENAI_TOOL_KV[tool[k]]
                    if svc == TOOL_SVC and name[k] == CALL
                    else b"",
                    status,
                )
            )
            spans.append(b"\x12" + varint(len(span)) + span)
            if has_log[k] or err[k]:
                number, text = SEVERITIES[3] if err[k] else SEVERITIES[int(sev[k])]
                rec = b"".join(
                    (
                        LOG_T.pack(0x09, start + 1000),
                        b"\x10" + varint(number),
                        ld(0x1A, text.encode()),
                        ld(0x2A, ld(0x0A, f"{LOG_BODIES[body[k]]} #{k}".encode())),
                        LOG_TOOL_KV[tool[k]],
                        b"\x4a\x10",
                        tid,
                        b"\x52\x08",
                        sid,
                    )
                )
                logs.append(b"\x12" + varint(len(rec)) + rec)
                n_logs += 1
            k += 1
        res_spans.append(ld(0x0A, resource + ld(0x12, SCOPE + b"".join(spans))))
        if logs:
            res_logs.append(ld(0x0A, resource + ld(0x12, SCOPE + b"".join(logs))))
    return b"".join(res_spans), b"".join(res_logs), n, n_logs


def _mb(path: str) -> str:
    return f"{Path(path).stat().st_size / 1e6:,.0f}"


def build(
    path: str,
    n_spans: int,
    n_logs: int,
    n_rooms: int,
    shape: str = "archive",
    seed: int = 7,
    env: dict[str, str] | None = None,
    minutes: int = 60,
) -> None:
    end_ns = time.time_ns() - 60 * 10**9
    t_plan = time.perf_counter()
    plan = Plan(n_spans, n_rooms, seed, end_ns, shape, minutes)
    rooms = [kv("room", f"room-{i:04d}", 0x0A) for i in range(n_rooms)]
    # A span has a log record when it failed (3 %, an ERROR record) or, else, with probability
    # 1 / log_every: 0.03 + 0.97 / log_every = n_logs / n_spans.
    log_every = max(1.0, 0.97 / max(1e-6, n_logs / n_spans - 0.03))
    print(f"plan: {plan.n_traces} traces, {plan.n_sessions} sessions"
          f" ({time.perf_counter() - t_plan:.1f}s)", flush=True)  # fmt: skip
    # The collector's store, tracker and maintenance jobs with their default settings beside the
    # build; the store keeps its 30 days, as with retention.max_age = 0 (or 30d and more).
    settings = load_settings(
        env={"ROOMSCOPE_RETENTION_MAX_AGE": "0", **(env or {})}, flags={"store.path": path}
    )
    store = create_store(settings)
    store.open()
    tracker = SessionTracker.from_settings(settings, store)
    writer = Writer(
        store,
        max_queue_records=400_000,
        max_queue_bytes=2**31,
        max_batch_records=40_000,
        retry_after=settings.get("limits.retry_after"),
        tracker=tracker,
        sweep_interval=settings.get("sessions.sweep_interval"),
    )
    writer.start()

    def compaction_job() -> Compaction:
        (job,) = [j for j in store.jobs(writer.run, None) if isinstance(j, Compaction)]
        return job

    # Compaction on the data's clock: the build sends an hour of telemetry (a month for the
    # archive) in minutes, and on the wall clock every span would be long settled by the end,
    # so the store would hold none of the unsorted newest minutes a live collector has. Here
    # the job sees the newest start sent so far as its time, then the data's end: as if the
    # telemetry had arrived as it happened and was queried right after.
    compaction = compaction_job()
    clock = [end_ns]
    done = threading.Event()

    def compact_on_data_clock() -> None:
        while not done.wait(settings.get("compaction.interval")):
            compaction.run_once(now_ns=clock[0])

    compactor = threading.Thread(target=compact_on_data_clock, name="compaction", daemon=True)
    compactor.start()
    tagger = Tagger.from_settings(settings)
    pending = []
    spans = logs = 0
    t0 = time.perf_counter()
    chunk = 100
    try:
        for lo in range(0, plan.n_traces, chunk):
            hi = min(plan.n_traces, lo + chunk)
            body_t, body_l, ns, nl = build_chunk(plan, lo, hi, rooms, log_every)
            for signal, body in (("traces", body_t), ("logs", body_l)):
                if not body:
                    continue
                decoded = decode_body(signal, body, "protobuf", tagger)
                assert decoded.rejected == 0, decoded.error_message
                while True:
                    try:
                        pending.append(writer.submit(decoded))
                        break
                    except Overloaded:
                        pending.pop(0).result()
            spans += ns
            logs += nl
            clock[0] = int(plan.t_start[hi - 1])
            while len(pending) > 200:
                pending.pop(0).result()
            if (lo // chunk) % 500 == 0:
                rate = spans / max(1e-9, time.perf_counter() - t0)
                print(f"  {spans:>11,} spans {logs:>10,} logs  {rate:,.0f} spans/s", flush=True)
        for fut in pending:
            fut.result()
        done.set()
        compactor.join()
        clock[0] = end_ns
        compaction.run_once(now_ns=end_ns)  # what became due since the job's last run
        print(f"compaction: {compaction.stats['chunks']} chunks, {compaction.stats['spans']:,}"
              f" spans; file {_mb(path)} MB")  # fmt: skip
        # The job's next runs, as a live collector's within minutes of the data's end: the
        # settled spans short of a range's worth move (compaction.wait), and the space its
        # moves and merges left free is given back (at most a run's steps each); until a run
        # does nothing.
        work = ("spans", "merged", "reclaimed")
        for _ in range(5):
            before = [compaction.stats[k] for k in work]
            compaction.run_once(now_ns=end_ns)
            if [compaction.stats[k] for k in work] == before:
                break
            print(f"the job's next run: {compaction.stats['spans']:,} spans moved in all,"
                  f" file {_mb(path)} MB", flush=True)  # fmt: skip
    finally:
        done.set()
        compaction.stop()  # a run in progress ends after its current step
        compactor.join()
        writer.stop()
        store.close()
    secs = time.perf_counter() - t0
    print(f"built {spans:,} spans + {logs:,} logs in {secs:.0f}s ({spans / secs:,.0f} spans/s)")
