"""Event store port and backends. See ``persistence.base`` and ``persistence.errors``."""

from persistence.base import AppendRequest, EventStore, Link, NewEvent, Snapshot, StoredEvent
from persistence.errors import ConcurrencyError, StoreError, StoreUnavailable

__all__ = [
    "AppendRequest",
    "ConcurrencyError",
    "EventStore",
    "Link",
    "NewEvent",
    "Snapshot",
    "StoreError",
    "StoreUnavailable",
    "StoredEvent",
]
