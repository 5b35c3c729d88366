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
    sqlite_partitions: int = 1  # files of a new SQLite store (the server: one per shard)
    cassandra_hosts: tuple[str, ...] = ("127.0.0.1:9042",)
    keyspace: str = "treasure"
    replication: dict[str, str | int] = field(
        default_factory=lambda: {"class": "SimpleStrategy", "replication_factor": 1}
    )
    request_timeout_s: float = 5.0


def open_store(config: StoreConfig) -> EventStore:
    if config.backend == "sqlite":
        from persistence.sqlite_partitions import PartitionedSqliteStore

        return PartitionedSqliteStore(
            config.data_dir,
            config.sqlite_partitions,
            synchronous=config.sqlite_synchronous,
            defer_sync=config.defer_sync,
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
