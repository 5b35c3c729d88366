"""The Cassandra backend against a real local node (started by ``scripts/cassandra``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from persistence import AppendRequest, ConcurrencyError, EventStore, StoreError
from persistence.base import AppendOutcome
from persistence.cassandra import CassandraEventStore
from persistence.errors import StoreUnavailable
from persistence.factory import StoreConfig, open_store
from tests.persistence.conformance import StoreConformance, ev
from tests.support.cassandra_node import CassandraNode, cassandra_node, start_or_skip

__all__ = ["cassandra_node"]  # the session fixture, imported so pytest finds it here

pytestmark = pytest.mark.cassandra

REPLICATION: dict[str, str | int] = {"class": "SimpleStrategy", "replication_factor": 1}


def fresh_keyspace() -> str:
    return f"t_{uuid.uuid4().hex[:20]}"


def open_cassandra(
    node: CassandraNode, keyspace: str, *, timeout_s: float = 10.0, partition_size: int = 5_000
) -> CassandraEventStore:
    return CassandraEventStore(
        hosts=[node.host],
        keyspace=keyspace,
        replication=REPLICATION,
        request_timeout_s=timeout_s,
        partition_size=partition_size,
    )


class TestCassandraConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _node(self, cassandra_node: CassandraNode) -> None:
        self.node = cassandra_node
        self.keyspace = fresh_keyspace()

    def make_store(self) -> EventStore:
        return open_cassandra(self.node, self.keyspace)

    def reopen_store(self, store: EventStore) -> EventStore:
        store.close()
        return open_cassandra(self.node, self.keyspace)


class TestSmallPartitions(StoreConformance):
    """The conformance suite again with 500-event partitions: every 500-event append fills one."""

    @pytest.fixture(autouse=True)
    def _node(self, cassandra_node: CassandraNode) -> None:
        self.node = cassandra_node
        self.keyspace = fresh_keyspace()

    def make_store(self) -> EventStore:
        return open_cassandra(self.node, self.keyspace, partition_size=500)

    def reopen_store(self, store: EventStore) -> EventStore:
        store.close()
        return open_cassandra(self.node, self.keyspace, partition_size=500)


@pytest.fixture
def small(cassandra_node: CassandraNode) -> Iterator[CassandraEventStore]:
    store = open_cassandra(cassandra_node, fresh_keyspace(), partition_size=10)
    yield store
    store.close()


def test_appends_across_partition_boundaries_read_back_from_anywhere(
    small: CassandraEventStore,
) -> None:
    version = 0
    for size in [7, 6, 1, 10, 3, 3, 9, 10, 1, 1, 8, 5]:  # ends exactly on and across boundaries
        events = [ev(n) for n in range(version + 1, version + size + 1)]
        version = small.append("s", version, events)
    assert [e.seq for e in small.read("s")] == list(range(1, version + 1))
    assert [e.data["n"] for e in small.read("s")] == list(range(1, version + 1))
    for after in range(version + 2):
        assert [e.seq for e in small.read("s", after_seq=after)] == list(
            range(after + 1, version + 1)
        )


def test_a_stale_or_early_writer_never_lands_in_an_empty_partition(
    small: CassandraEventStore,
) -> None:
    assert small.append("s", 0, [ev(n) for n in range(1, 8)]) == 7
    assert small.append("s", 7, [ev(n) for n in range(8, 14)]) == 13  # partition 0 holds 1..13
    for wrong in (10, 12, 14, 20, 30):
        with pytest.raises(ConcurrencyError):
            small.append("s", wrong, [ev(99)])
    assert small.append("s", 13, [ev(14)]) == 14
    with pytest.raises(ConcurrencyError):
        small.append("s", 13, [ev(99)])
    assert small.append("s", 14, []) == 14  # no events: only confirms the version
    with pytest.raises(ConcurrencyError):
        small.append("s", 13, [])
    assert [e.seq for e in small.read("s")] == list(range(1, 15))


def test_racing_writers_on_a_partition_boundary_one_wins(small: CassandraEventStore) -> None:
    small.append("s", 0, [ev(n) for n in range(1, 11)])  # partition 0 is full at 10
    start = threading.Barrier(6)

    def write(w: int) -> AppendOutcome:
        start.wait()
        return small.append_many([AppendRequest("s", 10, [ev(100 + w, writer=w)])])[0]

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(write, range(6)))
    assert sum(isinstance(o, int) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, ConcurrencyError) for o in outcomes if not isinstance(o, int))
    assert [e.seq for e in small.read("s")] == list(range(1, 12))


def test_an_append_larger_than_a_partition_is_refused(small: CassandraEventStore) -> None:
    with pytest.raises(ValueError, match="at most 10 events"):
        small.append("s", 0, [ev(n) for n in range(11)])


def test_the_factory_opens_cassandra(cassandra_node: CassandraNode) -> None:
    config = StoreConfig(
        backend="cassandra", cassandra_hosts=(cassandra_node.host,), keyspace=fresh_keyspace()
    )
    store = open_store(config)
    try:
        assert isinstance(store, CassandraEventStore)
        assert store.append("s", 0, [ev(1)]) == 1
    finally:
        store.close()


def test_no_node_listening_is_store_unavailable(cassandra_node: CassandraNode) -> None:
    with pytest.raises(StoreUnavailable):
        CassandraEventStore(
            hosts=["127.0.0.1:1"],
            keyspace="nowhere",
            replication=REPLICATION,
            request_timeout_s=1.0,
            connect_timeout_s=1.0,
        )


@dataclass
class Lane:
    """A writer's view of its streams: confirmed appends and at most one uncertain one."""

    name: str
    streams: list[str] = field(default_factory=list)
    version: int = 0
    confirmed: dict[str, list[list[int]]] = field(default_factory=dict)
    uncertain: dict[str, list[int]] = field(default_factory=dict)

    @property
    def stream(self) -> str:
        return self.streams[-1]

    def next_stream(self) -> None:
        self.streams.append(f"{self.name}-{len(self.streams)}")
        self.confirmed[self.stream] = []
        self.version = 0


class Writer(threading.Thread):
    """Appends three events per lane per round with ``append_many`` until told to stop.

    A lane whose append failed records it as uncertain and moves on to a new stream.
    """

    def __init__(self, store: EventStore, lanes: list[Lane]) -> None:
        super().__init__(name="appender")
        self.store, self.lanes = store, lanes
        self.halt = threading.Event()
        self.ok = self.errors = 0
        self.crashed: list[BaseException] = []

    def run(self) -> None:
        n = 0
        try:
            while not self.halt.is_set():
                payloads = [list(range(n + 3 * i, n + 3 * i + 3)) for i in range(len(self.lanes))]
                n += 3 * len(self.lanes)
                self.round(payloads)
        except BaseException as exc:  # surfaced by the test
            self.crashed.append(exc)

    def round(self, payloads: list[list[int]]) -> None:
        requests = [
            AppendRequest(lane.stream, lane.version, [ev(i, lane=lane.name) for i in ids])
            for lane, ids in zip(self.lanes, payloads, strict=True)
        ]
        try:
            outcomes = self.store.append_many(requests)
        except StoreError as exc:
            outcomes = [exc] * len(requests)
        for lane, ids, outcome in zip(self.lanes, payloads, outcomes, strict=True):
            if isinstance(outcome, int):
                assert outcome == lane.version + 3
                lane.confirmed[lane.stream].append(ids)
                lane.version = outcome
                self.ok += 1
            else:
                assert isinstance(outcome, StoreError)
                lane.uncertain[lane.stream] = ids  # may or may not have landed
                lane.next_stream()
                self.errors += 1


@pytest.fixture
def crash_node(tmp_path: Path) -> Iterator[CassandraNode]:
    """A node of its own whose schema survives kill -9 (the session node's may not)."""
    node = start_or_skip(CassandraNode(tmp_path / "node", durable_system=True))
    try:
        yield node
    finally:
        node.stop(kill=True)  # throwaway data: no need to wait for a drain


def test_killing_the_node_mid_appends_loses_no_ok_and_halves_nothing(
    crash_node: CassandraNode,
) -> None:
    cassandra_node = crash_node
    keyspace = fresh_keyspace()
    store = open_cassandra(cassandra_node, keyspace, timeout_s=2.0, partition_size=20)
    lanes = [Lane(f"lane{i}") for i in range(4)]
    for lane in lanes:
        lane.next_stream()
    writer = Writer(store, lanes)
    writer.start()
    try:
        _wait_for(lambda: writer.ok >= 400 or bool(writer.crashed), "400 appends", 60)
        cassandra_node.stop(kill=True)
        _wait_for(lambda: writer.errors >= 12 or bool(writer.crashed), "failing appends", 60)
    finally:
        writer.halt.set()
        writer.join(timeout=60)
        store.close()
        if not cassandra_node.is_running():
            cassandra_node.start()  # same directory and native port: the commit log is replayed
    assert not writer.crashed, writer.crashed
    assert not writer.is_alive()
    assert writer.ok >= 400

    reopened = open_cassandra(cassandra_node, keyspace, partition_size=20)
    try:
        for lane in lanes:
            for stream in lane.streams:
                got = [e.data["n"] for e in reopened.read(stream)]
                ok = [i for ids in lane.confirmed[stream] for i in ids]
                assert got[: len(ok)] == ok, f"{stream}: an acknowledged append is missing"
                rest = got[len(ok) :]
                assert rest in ([], lane.uncertain.get(stream)), f"{stream}: half an append {rest}"
                seqs = [e.seq for e in reopened.read(stream)]
                assert seqs == list(range(1, len(got) + 1))
        # the store is usable again and keeps guarding versions
        stream = lanes[0].stream
        version = sum(1 for _ in reopened.read(stream))
        assert reopened.append(stream, version, [ev(1)]) == version + 1
        with pytest.raises(ConcurrencyError):
            reopened.append(stream, version, [ev(2)])
    finally:
        reopened.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
