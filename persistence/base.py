"""The event store port: what the actors need of a store, and nothing more.

Streams are named by entity (``hunt-<id>``, ``player-<id>``); their events
carry contiguous sequence numbers from 1. ``append`` stores all of its events
or none. ``append_many`` is the group commit of a shard's batch: each request
is atomic on its own and gets its own outcome.

Links are the store's one index: which streams an owner takes part in (the
hunts of a player), so a reconnecting player's hunts are one read away. A
link travels with the append whose events made it, and is stored with them;
each carries the seq of the event that set it, and a change applies only if
its seq is newer than the one the link has, so links can be written again,
late or twice, and the newest word stands.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from persistence.errors import StoreError

Json = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be stored: its type, schema version and payload."""

    type: str
    version: int
    data: Json
    timestamp: int
    metadata: Json = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back: a ``NewEvent`` plus where it sits."""

    stream: str
    seq: int
    type: str
    version: int
    data: Json
    timestamp: int
    metadata: Json


@dataclass(frozen=True, slots=True)
class Link:
    """``owner`` takes part in ``target`` (``present``) or no longer does, as of the
    event ``seq`` of the stream that decided it."""

    owner: str
    target: str
    present: bool
    seq: int


@dataclass(frozen=True, slots=True)
class AppendRequest:
    stream: str
    expected_version: int
    events: Sequence[NewEvent]
    links: Sequence[Link] = ()
    """Stored with the events: on SQLite in their transaction; on Cassandra right after
    them, and a failure there is the request's outcome although its events landed."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream: str
    seq: int
    state: bytes


AppendOutcome = int | StoreError
"""The stream's new version, or the error that kept the events out."""


class EventStore(ABC):
    """The port. Backends: ``SqliteEventStore`` and ``CassandraEventStore``."""

    #: True when an append is durable only after ``sync``: whoever acknowledges it
    #: must call ``sync`` first (a shard does so after each batch, before it answers).
    defers_sync = False

    def sync(self) -> None:  # noqa: B027 - a no-op where appends are durable on return
        """Makes every append that has returned durable; a no-op unless ``defers_sync``."""

    def append(self, stream: str, expected_version: int, events: Sequence[NewEvent]) -> int:
        """Store ``events`` after ``expected_version``; return the new version."""
        (outcome,) = self.append_many([AppendRequest(stream, expected_version, events)])
        if isinstance(outcome, StoreError):
            raise outcome
        return outcome

    @abstractmethod
    def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        """Append to many streams at once; one outcome per request, in order.

        At most one request per stream (Cassandra runs them concurrently, so a second
        one would race the first): ``ValueError`` otherwise, on every backend.

        Raises ``StoreUnavailable`` only when nothing could be attempted at all.
        """

    @staticmethod
    def check_one_per_stream(requests: Sequence[AppendRequest]) -> None:
        streams = {req.stream for req in requests}
        if len(streams) < len(requests):
            raise ValueError("append_many takes at most one request per stream")

    @abstractmethod
    def read(self, stream: str, after_seq: int = 0) -> Iterator[StoredEvent]:
        """The stream's events with ``seq > after_seq``, in order, fetched in pages."""

    @abstractmethod
    def save_snapshot(self, stream: str, seq: int, state: bytes) -> None:
        """Keep ``state`` as the stream's state after event ``seq``."""

    def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        """Keep several snapshots; backends may write them together."""
        for snap in snapshots:
            self.save_snapshot(snap.stream, snap.seq, snap.state)

    @abstractmethod
    def load_snapshot(self, stream: str) -> Snapshot | None:
        """The newest snapshot of the stream, if any."""

    @abstractmethod
    def set_links(self, links: Sequence[Link]) -> None:
        """Write links outside an append (again, after a failure); older seqs lose."""

    @abstractmethod
    def linked(self, owner: str) -> list[str]:
        """The targets ``owner`` takes part in, sorted."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
