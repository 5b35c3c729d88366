"""Settings, read once at the edge (flags, then ``TREASURE_*`` environment variables)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from persistence.factory import StoreConfig
from server.gateway.guard import Limits


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = Path("data")
    store: str = "sqlite"
    cassandra_hosts: tuple[str, ...] = ("127.0.0.1:9042",)
    keyspace: str = "treasure"
    shards: int = field(default_factory=lambda: os.cpu_count() or 1)
    admin_port: int = 1900
    log_level: str = "info"
    log_format: str = "text"
    max_frame_bytes: int = 64 * 1024
    rate_per_s: float = 100.0
    rate_burst: int = 200
    out_queue_frames: int = 1024
    bad_frames_close_after: int = 20
    # A hunt's snapshot carries its remembered replies, so snapshots are costly to write;
    # 500 keeps them rare while an activation's replay stays short (docs/performance.md).
    snapshot_every: int = 500
    passivate_after_s: float = 300.0
    request_timeout_s: float = 10.0
    admin_http_port: int = 8766
    admin_http_host: str = "127.0.0.1"
    admin_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    handshake_timeout_s: float = 10.0
    accept_rate: float = 500.0
    max_connections: int = 20_000
    max_conns_per_ip: int = 200
    hello_rate_per_ip: float = 5.0
    answer_rate: float = 10.0
    limit_loopback: int = 0

    def limits(self) -> Limits:
        return Limits(
            max_connections=self.max_connections,
            max_conns_per_ip=self.max_conns_per_ip,
            hello_rate_per_ip=self.hello_rate_per_ip,
            answer_rate=self.answer_rate,
            limit_loopback=bool(self.limit_loopback),
        )

    def store_config(self) -> StoreConfig:
        return StoreConfig(
            backend=self.store,
            data_dir=self.data_dir,
            sqlite_partitions=self.shards,  # each shard writes a file of its own
            cassandra_hosts=self.cassandra_hosts,
            keyspace=self.keyspace,
        )


_FLAGS: list[tuple[str, type, str]] = [
    ("host", str, "address to listen on"),
    ("port", int, "WebSocket port (0: any free port)"),
    ("data-dir", Path, "where the SQLite store and the admin token live"),
    ("store", str, "sqlite or cassandra"),
    ("cassandra-hosts", str, "comma-separated host:port list"),
    ("keyspace", str, "Cassandra keyspace"),
    ("shards", int, "ShardHost actors (default: one per CPU core)"),
    ("admin-port", int, "Thespian admin port"),
    ("log-level", str, "debug, info, warning, error"),
    ("log-format", str, "text or json"),
    ("max-frame-bytes", int, "largest accepted frame; larger ones close with 1009"),
    ("rate-per-s", float, "commands per second per connection"),
    ("rate-burst", int, "burst of commands per connection"),
    ("snapshot-every", int, "snapshot an entity every N events"),
    ("passivate-after-s", float, "drop an idle entity from memory after this long"),
    ("admin-http-port", int, "admin console / metrics HTTP port (0: any free port)"),
    ("admin-http-host", str, "address the admin endpoint listens on"),
    ("admin-token", str, "bearer token for the admin endpoint"),
    ("out-queue-frames", int, "outgoing frames queued per connection before it is closed"),
    ("handshake-timeout-s", float, "close connections that do not finish the handshake in time"),
    ("accept-rate", float, "new connections accepted per second (0: no limit)"),
    ("max-connections", int, "connections in all (HTTP 503 beyond)"),
    ("max-conns-per-ip", int, "connections per remote address (HTTP 429 beyond)"),
    ("hello-rate-per-ip", float, "registrations per second per remote address"),
    ("answer-rate", float, "answers and check-ins per second per player"),
    ("limit-loopback", int, "1: apply the per-address limits to loopback clients too"),
    ("tls-cert", Path, "certificate file for wss://"),
    ("tls-key", Path, "key file for wss://"),
]


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``run_server.py``; a flag left out takes its ``Settings`` default."""
    parser = argparse.ArgumentParser(prog="run_server.py", description="Treasure hunt game server")
    for flag, kind, text in _FLAGS:
        parser.add_argument(f"--{flag}", type=kind, help=text)
    return parser


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    parser = build_parser()
    args = vars(parser.parse_args(list(argv)))
    values: dict[str, object] = {}
    for flag, kind, _ in _FLAGS:
        name = flag.replace("-", "_")
        raw = args[name]
        if raw is None and f"TREASURE_{name.upper()}" in env:
            raw = kind(env[f"TREASURE_{name.upper()}"])
        if raw is not None:
            values[name] = raw
    if isinstance(values.get("cassandra_hosts"), str):
        values["cassandra_hosts"] = tuple(str(values["cassandra_hosts"]).split(","))
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.store not in ("sqlite", "cassandra"):
        parser.error("--store must be sqlite or cassandra")
    return settings
