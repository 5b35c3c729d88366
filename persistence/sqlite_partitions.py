"""The SQLite store in one file per partition, so that each shard writes a file of its own.

A stream lives in partition ``crc32(home) % count``, where ``home`` is the stream's
name without a ``-replies`` suffix (a hunt's replies live with the hunt). That is the
shard that hosts the entity (``actors.placement.shard_for`` hashes the same name), so
when the partitions are as many as the shards, each shard is the one writer of its file.

Why: with one file for every shard, a shard's commit made SQLite drop the other
shards' page caches (they read their pages again), the writers took turns on one lock,
and their fsyncs of one log were serialized (docs/performance.md).

The count is fixed when the data directory is first used, and kept in the first file
(``events.sqlite3``, whose name does not change): opening with another count later,
for instance with more shards, finds the files where they were. A directory written
before partitions existed holds its events in that first file, and stays one partition.

A link lives in the partition of its target, the stream whose append set it, so it is
written in that append's transaction; ``linked`` reads every partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from persistence.base import AppendOutcome, AppendRequest, EventStore, Link, Snapshot, StoredEvent
from persistence.errors import StoreError, StoreUnavailable
from persistence.sqlite import SqliteEventStore

FIRST_FILE = "events.sqlite3"
DERIVED_SUFFIX = "-replies"
T = TypeVar("T")


def home_stream(stream: str) -> str:
    """The stream whose partition ``stream`` lives in: itself, or its owner's."""
    return stream.removesuffix(DERIVED_SUFFIX)


def partition_of(stream: str, count: int) -> int:
    return zlib.crc32(home_stream(stream).encode()) % count


def partition_file(data_dir: Path, index: int) -> Path:
    return data_dir / (FIRST_FILE if index == 0 else f"events.{index}.sqlite3")


class PartitionedSqliteStore(EventStore):
    """``SqliteEventStore`` files under ``data_dir``, ``partitions`` of them when the
    directory is new (otherwise as many as it was made with)."""

    def __init__(
        self,
        data_dir: str | Path,
        partitions: int = 1,
        *,
        synchronous: str = "FULL",
        busy_timeout_s: float = 5.0,
        defer_sync: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)

        def open_part(index: int) -> SqliteEventStore:
            path = partition_file(self.data_dir, index)
            return SqliteEventStore(
                path, synchronous=synchronous, busy_timeout_s=busy_timeout_s, defer_sync=defer_sync
            )

        first = open_part(0)
        self.parts = [first]
        try:
            count = first.partition_count(max(1, partitions))
            first.sync()  # the count is durable before any partition holds an event
            self.parts += [open_part(index) for index in range(1, count)]
        except BaseException:
            self.close()
            raise
        self.defers_sync = first.defers_sync

    def _part(self, stream: str) -> SqliteEventStore:
        parts = self.parts
        return parts[partition_of(stream, len(parts))] if len(parts) > 1 else parts[0]

    def _by_partition(
        self, items: Iterable[T], stream_of: Callable[[T], str]
    ) -> dict[int, list[T]]:
        """``items`` grouped by the partition of their stream, in their order."""
        groups: dict[int, list[T]] = {}
        for item in items:
            groups.setdefault(partition_of(stream_of(item), len(self.parts)), []).append(item)
        return groups

    def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        if len(self.parts) == 1 or not requests:
            return self.parts[0].append_many(requests)
        self.check_one_per_stream(requests)
        groups = self._by_partition(range(len(requests)), lambda i: requests[i].stream)
        outcomes: list[AppendOutcome | None] = [None] * len(requests)
        failed = 0
        for index, members in groups.items():
            try:
                done = self._append_in(index, [requests[i] for i in members])
            except StoreUnavailable as exc:
                failed += 1
                done = [exc] * len(members)
            for i, outcome in zip(members, done, strict=True):
                outcomes[i] = outcome
        if failed == len(groups):  # nothing could be attempted at all
            raise next(o for o in outcomes if isinstance(o, StoreUnavailable))
        return [o for o in outcomes if o is not None]

    def _append_in(self, index: int, requests: list[AppendRequest]) -> list[AppendOutcome]:
        """The requests of one partition; links of another partition's target (none are,
        from the shards) are written right after, and their failure is the outcome."""
        local: list[AppendRequest] = []
        later: dict[int, list[Link]] = {}
        for i, req in enumerate(requests):
            by_target = self._by_partition(req.links, lambda link: link.target)
            here = by_target.pop(index, [])
            if by_target:
                later[i] = [link for away in by_target.values() for link in away]
            local.append(replace(req, links=here) if by_target else req)
        outcomes = self.parts[index].append_many(local)
        for i, links in later.items():
            if not isinstance(outcomes[i], StoreError):
                try:
                    self.set_links(links)
                except StoreError as exc:
                    outcomes[i] = exc
        return outcomes

    def read(self, stream: str, after_seq: int = 0) -> Iterator[StoredEvent]:
        return self._part(stream).read(stream, after_seq)

    def save_snapshot(self, stream: str, seq: int, state: bytes) -> None:
        self._part(stream).save_snapshot(stream, seq, state)

    def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        for index, group in self._by_partition(snapshots, lambda snap: snap.stream).items():
            self.parts[index].save_snapshots(group)

    def load_snapshot(self, stream: str) -> Snapshot | None:
        return self._part(stream).load_snapshot(stream)

    def set_links(self, links: Sequence[Link]) -> None:
        for index, group in self._by_partition(links, lambda link: link.target).items():
            self.parts[index].set_links(group)

    def linked(self, owner: str) -> list[str]:
        return sorted(target for part in self.parts for target in part.linked(owner))

    def sync(self) -> None:
        for part in self.parts:
            part.sync()

    def close(self) -> None:
        for part in self.parts:
            part.close()
