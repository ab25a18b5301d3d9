"""Every setting of roomscope as data: section, name, default, help text, type and check.

collector/settings.py turns this table into loaded settings (defaults < TOML < environment <
flags), environment variable names and the documented ``config/roomscope.toml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import setting_values as check


@dataclass(frozen=True)
class Setting:
    section: str
    name: str
    default: Any
    help: str
    kind: type  # int, float, str, bool, list (of str) or dict (a table of tables)
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None
    example: str = ""  # dict settings: a commented example for config/roomscope.toml

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return f"ROOMSCOPE_{self.section}_{self.name}".upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "server", "host", "0.0.0.0", "Address the OTLP receivers bind to.", str, check.non_empty
    ),
    Setting("server", "grpc_port", 4317, "OTLP/gRPC port.", int, check.port),
    Setting("server", "http_port", 4318, "OTLP/HTTP port.", int, check.port),
    Setting(
        "server", "api_host", "127.0.0.1", "Address the query API binds to.", str, check.non_empty
    ),
    Setting(
        "server", "api_port", 4320, "Query API port (REST API, health checks).", int, check.port
    ),
    Setting(
        "server",
        "shutdown_timeout",
        10.0,
        "Seconds a shutdown waits for in-flight requests before it stops them.",
        float,
        check.positive,
    ),
    Setting(
        "store",
        "path",
        "./roomscope.duckdb",
        "The DuckDB file telemetry is written to.",
        str,
        check.non_empty,
    ),
    Setting(
        "store",
        "threads",
        0,
        "DuckDB worker threads of the collector's database; 0: one less than the cores (at"
        " least 1). Fewer threads make appends cheaper (1 thread: ~40% less per span than 2)"
        " and leave a core to the receivers; queries through this collector's API use them.",
        int,
        check.non_negative,
    ),
    Setting(
        "store",
        "memory_limit",
        "1GiB",
        "The collector's memory budget, the whole process: e.g. 512MB, 1GiB, 4GB. Three"
        " eighths of it, at most 384 MiB, is set aside for the process itself (Python, gRPC,"
        " HTTP, the requests being decoded), the write queue takes at most a quarter"
        " (limits.max_queue_bytes), and DuckDB the rest (its buffer cache, the data written"
        " since the last checkpoint, the working memory of queries); a store read with --db"
        " gives it all to DuckDB."
        " A query that needs more spills to the folder store.path + .tmp where DuckDB can"
        " (sorts, joins, grouping) and fails with an out-of-memory error where it cannot;"
        " ingest goes on.",
        str,
        check.memory,
    ),
    Setting(
        "store",
        "checkpoint_wal_bytes",
        256 * 1024 * 1024,
        "Write-ahead log size that forces a checkpoint under load, at most a quarter of"
        " DuckDB's share of store.memory_limit (what the log holds stays in DuckDB's memory"
        " until the checkpoint). Checkpoints rewrite the last row group, so rare large ones cost"
        " far less per record than DuckDB's 16 MiB default.",
        int,
        check.positive,
    ),
    Setting(
        "store",
        "idle_checkpoint_bytes",
        8 * 1024 * 1024,
        "When ingest pauses (checked every sessions.sweep_interval), checkpoint if the"
        " write-ahead log has grown past this many bytes.",
        int,
        check.positive,
    ),
    # Scale-out (SPEC 10): several collectors on one DuckLake; docs/scale-out.md.
    Setting(
        "store",
        "backend",
        "duckdb",
        'Where telemetry is stored: "duckdb" (the file store.path) or "ducklake" (a lake of'
        " Parquet files under store.data_path with a PostgreSQL catalog store.catalog, written"
        " by any number of collectors).",
        str,
        lambda v: None if v in ("duckdb", "ducklake") else 'must be "duckdb" or "ducklake"',
    ),
    Setting(
        "store",
        "catalog",
        "",
        'The lake\'s PostgreSQL catalog (store.backend = "ducklake"), as a URL:'
        " postgresql://user@host:port/db (a password from PGPASSWORD or ~/.pgpass).",
        str,
    ),
    Setting(
        "store",
        "data_path",
        "",
        'Where the lake\'s Parquet files go (store.backend = "ducklake"): a directory every'
        " collector and reader reaches, or s3://bucket/prefix (credentials from the AWS_*"
        " variables).",
        str,
    ),
    Setting(
        "store",
        "s3_endpoint",
        "",
        "An S3-compatible endpoint (host:port or a URL) for an s3:// store.data_path; empty:"
        " AWS S3.",
        str,
    ),
    Setting("store", "s3_region", "us-east-1", "The region of an s3:// store.data_path.", str),
    Setting(
        "tagging",
        "project_keys",
        ["project", "meshagent.project"],
        "Attribute keys naming the project, first present wins (record, then resource).",
        list,
        check.non_empty_list,
    ),
    Setting(
        "tagging",
        "room_keys",
        ["room", "room.name", "meshagent.room"],
        "Attribute keys naming the room, first present wins (record, then resource).",
        list,
        check.non_empty_list,
    ),
    Setting(
        "tagging",
        "session_keys",
        ["session", "session.id", "meshagent.session.id"],
        "Attribute keys carrying an explicit session id (record, then resource).",
        list,
        check.non_empty_list,
    ),
    Setting(
        "tagging",
        "default_project",
        "default",
        "Project of records that name none.",
        str,
        check.non_empty,
    ),
    Setting(
        "sessions",
        "idle_timeout",
        300.0,
        "Seconds without a record after which a session ends; also the gap that splits"
        " inferred sessions.",
        float,
        check.positive,
    ),
    Setting(
        "sessions",
        "max_future_skew",
        300.0,
        "Records stamped more than this many seconds after their arrival are taken at"
        " their receive time when sessions are tracked (clock skew).",
        float,
        check.non_negative,
    ),
    Setting(
        "sessions",
        "sweep_interval",
        5.0,
        "Seconds between sweeps that end idle sessions.",
        float,
        check.positive,
    ),
    Setting(
        "limits",
        "max_body_bytes",
        16 * 1024 * 1024,
        "Largest request body accepted, after decompression (413 above it).",
        int,
        check.positive,
    ),
    Setting(
        "limits",
        "max_queue_records",
        200_000,
        "Records decoded but not yet committed, at most; past it requests get 503/"
        "UNAVAILABLE with Retry-After so exporters retry.",
        int,
        check.positive,
    ),
    Setting(
        "limits",
        "max_queue_bytes",
        256 * 1024 * 1024,
        "Bytes of records decoded but not yet committed (their Arrow tables), at most, and never"
        " more than a quarter of store.memory_limit (the queue's share of the budget); past it"
        " requests get 503/UNAVAILABLE with Retry-After.",
        int,
        check.positive,
    ),
    Setting(
        "limits",
        "retry_after",
        1,
        "Seconds given in Retry-After when the queue is full.",
        int,
        check.positive,
    ),
    Setting(
        "limits",
        "request_timeout",
        30.0,
        "Seconds a client has to send a whole request (headers and body).",
        float,
        check.positive,
    ),
    Setting(
        "limits",
        "header_timeout",
        10.0,
        "Seconds a client has to send a request's headers before the connection is closed"
        " (slow-loris protection).",
        float,
        check.positive,
    ),
    Setting(
        "writer",
        "max_batch_records",
        20_000,
        "Records committed together in one group commit, at most.",
        int,
        check.positive,
    ),
    Setting(
        "ingest",
        "fast_decode",
        True,
        "Decode protobuf trace requests with the C decoder (collector._otlpfast) when it is"
        " built; false forces the pure-Python path (same table, slower).",
        bool,
    ),
    Setting(
        "ingest",
        "inline_decode_bytes",
        262144,
        "Protobuf trace bodies up to this many bytes (after decompression) are decoded by the"
        " C decoder on the receiver's event loop; larger ones and every other body in a decode"
        " thread. 0 decodes every body in a thread. Inline is faster: each thread more that"
        " wants the GIL slows the writer.",
        int,
        check.non_negative,
    ),
    Setting(
        "forward",
        "endpoints",
        {},
        "OTLP endpoints every committed record is also sent to (docs/forwarding.md): a table"
        " per endpoint name with url (http(s)://HOST:PORT for OTLP/HTTP protobuf, grpc(s)://"
        "HOST:PORT for OTLP/gRPC) and optional headers. Records carry their project, room and"
        " session as resource attributes. Environment: the same as JSON.",
        dict,
        check.endpoints,
        example="""[forward.endpoints.tempo]
url = "http://tempo:4318"
headers = { authorization = "Bearer SECRET" }
[forward.endpoints.otelcol]
url = "grpc://otel-collector:4317"
""",
    ),
    Setting(
        "forward",
        "max_queue_bytes",
        512 * 2**20,
        "Bytes of committed batches the store keeps for endpoints that have not taken them (an"
        " upstream down or slow); past it the oldest unsent batches are dropped and counted"
        " (roomscope status). Ingest never waits for an upstream.",
        int,
        check.positive,
    ),
    Setting(
        "forward",
        "timeout",
        10.0,
        "Seconds one request to a forwarding endpoint may take.",
        float,
        check.positive,
    ),
    Setting(
        "retention",
        "max_age",
        "7d",
        "Delete spans, logs and metric points older than this (by their own time), and"
        " sessions last seen before it: 30d, 12h, 90m; 0 keeps everything.",
        str,
        lambda v: check.age(v),
    ),
    Setting(
        "retention",
        "max_bytes",
        "0",
        "Cap on the store's data (the database file's used blocks plus its write-ahead log):"
        " past it, retention deletes the oldest spans, logs and metric points (and sessions"
        " last seen before them) down to 90% of the cap; the freed blocks are reused, so the"
        " file stops growing near the cap. A size such as 20GB or 500MiB; 0: no cap. The"
        " store may pass it by what arrives in one retention.interval, and the log by up to"
        " store.checkpoint_wal_bytes: keep the cap well above that.",
        str,
        lambda v: check.disk_size(v),
    ),
    Setting(
        "retention",
        "interval",
        60.0,
        "Seconds between retention runs (each deletes through the writer in slices of at most"
        " an hour and about 250,000 records, each a transaction).",
        float,
        check.positive,
    ),
    Setting(
        "compaction",
        "rows",
        250_000,
        "Move settled spans into span_archive, sorted by room and stored smaller, once this"
        " many have gathered past the last compacted range (one transaction each; a search by"
        " room or a session's read then reads few row groups); 0 turns compaction off.",
        int,
        check.non_negative,
    ),
    Setting(
        "compaction",
        "after",
        "1m",
        "Only spans whose start time is older than this are compacted (newer ones stay in"
        " arrival order, which searches of the newest seconds read first; a span that arrives"
        " for a range already compacted, such as a long span sent when it ends, moves with the"
        " next range).",
        str,
        lambda v: check.age(v),
    ),
    Setting(
        "compaction",
        "wait",
        "0",
        "Settled spans fewer than compaction.rows wait in arrival order at most this long after"
        " compaction.after (e.g. 2m); then a run that finds no range's worth moves them as a"
        " smaller range, which the next move takes back and sorts with its own spans. Faster"
        " searches of one room after a busy period, slower searches across rooms of the newest"
        " minutes; 0: they wait for a range's worth.",
        str,
        lambda v: check.age(v),
    ),
    Setting(
        "compaction",
        "merge",
        4,
        "Merge this many compacted ranges of one level, consecutive in time, into one range of"
        " the next level, sorted by room again (in pieces of compaction.rows spans), so that a"
        " room's spans fill fewer row groups; 0 turns merging off.",
        int,
        lambda v: None if v == 0 or v >= 2 else "must be 0 (off) or at least 2",
    ),
    Setting(
        "compaction",
        "levels",
        2,
        "The highest level a merge makes: a span is rewritten at most this many times after"
        " its move (with merge = 4, a level-2 range holds 16 x compaction.rows spans).",
        int,
        check.non_negative,
    ),
    Setting(
        "compaction",
        "reclaim",
        0.02,
        "When more than this share of the database file is free blocks (left by moves, merges"
        " and retention until appends reuse them), rewrite the row groups (or the keyed tables'"
        " indexes) at the end of the file into them, so that the checkpoint can shorten the"
        " file; 0 turns it off.",
        float,
        lambda v: None if 0 <= v < 1 else "must be at least 0 and below 1",
    ),
    Setting(
        "compaction",
        "interval",
        60.0,
        "Seconds between compaction runs.",
        float,
        check.positive,
    ),
    Setting(
        "query",
        "default_limit",
        100,
        "Records a page of a list holds when no limit is given (the API's lists; the CLI's table"
        " and json output).",
        int,
        check.positive,
    ),
    Setting(
        "query",
        "timeout",
        30.0,
        "Seconds an ad-hoc SQL query (roomscope sql, POST /api/v1/sql) may run.",
        float,
        check.positive,
    ),
    Setting(
        "query",
        "probe_timeout",
        0.5,
        "Seconds the CLI waits for the configured server's /healthz before it reads the"
        " store file instead.",
        float,
        check.positive,
    ),
    Setting(
        "query",
        "max_rows",
        10_000,
        "Rows an ad-hoc SQL query returns at most (results are streamed and cut there).",
        int,
        check.positive,
    ),
    Setting(
        "query",
        "stream_memory_limit",
        "64MiB",
        "DuckDB's memory budget while the CLI prints every span of a session from a store file"
        " (--db, roomscope session traces -o jsonl or -o csv), in place of store.memory_limit:"
        " the read streams a batch of traces at a time, and a bigger budget only caches more of"
        " the file's blocks.",
        str,
        check.memory,
    ),
    Setting(
        "usage",
        "prices",
        {},
        "Prices per model for the cost of agent usage (roomscope usage), in USD per million"
        " tokens: a table per model name with input, output and optional cached_input (cached"
        " input tokens; default: the input price). Models without a price have cost null."
        " Environment: the same as JSON.",
        dict,
        check.prices,
        example="""[usage.prices."gpt-4o"]   # an example, not a claim of today's prices
input = 2.5
output = 10.0
cached_input = 1.25""",
    ),
    Setting(
        "auth",
        "enabled",
        False,
        "Require bearer tokens: ingest tokens on OTLP, query tokens on the query API (each"
        " token sees and writes only its project).",
        bool,
    ),
    Setting(
        "auth",
        "tokens_file",
        "./roomscope-tokens.toml",
        "TOML file of token hashes ([[tokens]] sha256, project, scope); written by"
        " `roomscope token create`.",
        str,
        check.non_empty,
    ),
    Setting(
        "tls",
        "cert_file",
        "",
        "PEM certificate (chain) for TLS on all three listeners; empty = plain TCP.",
        str,
    ),
    Setting(
        "tls",
        "key_file",
        "",
        "PEM private key for tls.cert_file.",
        str,
    ),
)
