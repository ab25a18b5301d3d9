"""``roomscope demo --serve``: the demo's collector kept running, its console's URL printed first,
the demo's history sent, then a trickle of live telemetry (agent turns with GenAI spans, tool
calls that fail now and then, logs, metrics that move) into active sessions until Ctrl-C, which
stops the senders and the collector cleanly and keeps the store."""

from __future__ import annotations

import random
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
from opentelemetry._logs import SeverityNumber

from .demo import (
    SEC,
    Manifest,
    Signals,
    agent_turn,
    demo_collector,
    emit_log,
    fresh_store,
    send_workload,
)

API_PORT = 4320  # the console's usual address, when it is free
TICK_SECONDS = 1.0  # one agent turn a tick, in turn in each live room
METRICS_EVERY = 2  # ticks between metric exports
SESSION_TURNS = 120  # turns before a room's explicit live session makes way for a new one
LIVE_ROOMS = (("lobby", True), ("studio", True), ("support", False))  # (room, explicit session)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class LiveDemo:
    """The live trickle: one turn a tick in the next room, each room's session explicit (a new
    one every SESSION_TURNS turns) or inferred by the collector."""

    grpc: str
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    ticks: int = 0

    def __post_init__(self) -> None:
        self.agent = Signals("agent", self.grpc)
        self.tools = Signals("tools", self.grpc)
        self.manifest = Manifest()
        meter = self.agent.meter
        self.turns = meter.create_counter("agent.turns", unit="1")
        self.latency = meter.create_histogram("llm.latency", unit="ms")
        self.depth = self.tools.meter.create_gauge("tools.queue.depth")

    def session_of(self, room: str, explicit: bool) -> str | None:
        return f"{room}-live-{self.ticks // SESSION_TURNS + 1}" if explicit else None

    def tick(self) -> None:
        room, explicit = LIVE_ROOMS[self.ticks % len(LIVE_ROOMS)]
        session = self.session_of(room, explicit)
        tags = {"room": room, **({"session": session} if session else {})}
        self.ticks += 1
        t = time.time_ns() - 3 * SEC  # a turn lasts up to ~2.5 s: it ends about now
        if self.ticks <= len(LIVE_ROOMS):
            info = SeverityNumber.INFO
            emit_log(self.agent, self.manifest, t, info, "INFO", f"participant joined {room}", tags)
        agent_turn(
            self.agent, self.tools, self.manifest, self.rng, t, tags, room, session,
            self.ticks // len(LIVE_ROOMS), self.ticks,
        )  # fmt: skip
        self.turns.add(1, tags)
        self.latency.record(300 + self.rng.random() * 900, tags)
        self.depth.set(self.rng.randint(0, 8), tags)
        for sig in (self.agent, self.tools):
            sig.tp.force_flush()
            sig.lp.force_flush()
            if self.ticks % METRICS_EVERY == 0:
                sig.mp.force_flush()

    def shutdown(self) -> None:
        self.agent.shutdown()
        self.tools.shutdown()


def serve_demo(db: str | None, api_port: int | None) -> None:
    """Run the demo collector with live telemetry until Ctrl-C (SIGINT); the store is kept."""
    path: Path = fresh_store(db)
    port = api_port if api_port is not None else (API_PORT if port_free(API_PORT) else 0)
    with demo_collector(path, **{"server.api_port": port}) as collector:
        ports = collector.ports
        grpc = f"127.0.0.1:{ports['grpc']}"
        click.echo(f"roomscope console: http://127.0.0.1:{ports['api']}/")
        click.echo(
            f"roomscope demo --serve: a collector on {path} (OTLP gRPC {grpc},"
            f" HTTP http://127.0.0.1:{ports['http']}); sending the demo's history ...",
            err=True,
        )
        live = None
        try:
            send_workload(grpc)
            click.echo("live telemetry into rooms lobby, studio, support; Ctrl-C stops", err=True)
            live = LiveDemo(grpc)
            while True:
                live.tick()
                time.sleep(TICK_SECONDS)
        except KeyboardInterrupt:
            click.echo("stopping ...", err=True)
        finally:
            if live is not None:
                live.shutdown()
    db_arg = shlex.quote(str(path))
    click.echo(f"stopped; the store is kept: roomscope --db {db_arg} session list", err=True)
