"""Builds the configured backend; SQLite when nothing else is asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from persistence.base import EventStore


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "sqlite"
    data_dir: Path = Path("data")
    sqlite_synchronous: str = "FULL"
    defer_sync: bool = False  # appends durable only after ``EventStore.sync`` (SQLite)
    cassandra_hosts: tuple[str, ...] = ("127.0.0.1:9042",)
    keyspace: str = "treasure"
    replication: dict[str, str | int] = field(
        default_factory=lambda: {"class": "SimpleStrategy", "replication_factor": 1}
    )
    request_timeout_s: float = 5.0

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "events.sqlite3"


def open_store(config: StoreConfig) -> EventStore:
    if config.backend == "sqlite":
        from persistence.sqlite import SqliteEventStore

        return SqliteEventStore(
            config.sqlite_path, synchronous=config.sqlite_synchronous, defer_sync=config.defer_sync
        )
    if config.backend == "cassandra":
        from persistence.cassandra import CassandraEventStore

        return CassandraEventStore(
            hosts=config.cassandra_hosts,
            keyspace=config.keyspace,
            replication=config.replication,
            request_timeout_s=config.request_timeout_s,
        )
    raise ValueError(f"unknown store backend {config.backend!r} (sqlite or cassandra)")
