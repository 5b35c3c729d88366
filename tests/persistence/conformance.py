"""The one conformance suite every event store backend passes unchanged.

Subclass ``StoreConformance`` and give it ``make_store()`` (a fresh, empty
store) and ``reopen_store(store)`` (close it and open the same data again).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

import pytest

from persistence import (
    AppendRequest,
    ConcurrencyError,
    EventStore,
    Link,
    NewEvent,
    StoreError,
)


def ev(n: int, **data: object) -> NewEvent:
    return NewEvent("thing_happened", 1, {"n": n, **data}, 1_700_000_000_000 + n, {"cmd": f"c{n}"})


class StoreConformance(ABC):
    @abstractmethod
    def make_store(self) -> EventStore: ...

    @abstractmethod
    def reopen_store(self, store: EventStore) -> EventStore: ...

    @pytest.fixture
    def store(self) -> Iterator[EventStore]:
        store = self.make_store()
        yield store
        store.close()

    def test_round_trip_keeps_every_field(self, store: EventStore) -> None:
        new = NewEvent("hunt_created", 3, {"name": "x", "n": [1, 2]}, 123, {"cmd": "a", "p": "p1"})
        assert store.append("hunt-a", 0, [new]) == 1
        (got,) = list(store.read("hunt-a"))
        assert (got.stream, got.seq, got.type, got.version) == ("hunt-a", 1, "hunt_created", 3)
        assert got.data == {"name": "x", "n": [1, 2]}
        assert got.timestamp == 123
        assert got.metadata == {"cmd": "a", "p": "p1"}

    def test_events_are_read_in_order_with_contiguous_seqs(self, store: EventStore) -> None:
        store.append("s", 0, [ev(1), ev(2)])
        store.append("s", 2, [ev(3)])
        assert [e.seq for e in store.read("s")] == [1, 2, 3]
        assert [e.data["n"] for e in store.read("s", after_seq=1)] == [2, 3]
        assert list(store.read("s", after_seq=3)) == []
        assert list(store.read("missing")) == []

    def test_stale_expected_version_raises_and_stores_nothing(self, store: EventStore) -> None:
        store.append("s", 0, [ev(1)])
        for stale in (0, 2, 7):
            with pytest.raises(ConcurrencyError):
                store.append("s", stale, [ev(9)])
        assert [e.data["n"] for e in store.read("s")] == [1]

    def test_an_append_stores_all_events_or_none(self, store: EventStore) -> None:
        store.append("s", 0, [ev(1)])
        with pytest.raises(ConcurrencyError):
            store.append("s", 0, [ev(2), ev(3), ev(4)])
        store.append("s", 1, [ev(2), ev(3), ev(4)])
        assert [e.seq for e in store.read("s")] == [1, 2, 3, 4]

    def test_concurrent_writers_race_for_the_same_seq_and_one_wins(self, store: EventStore) -> None:
        rounds, writers = 20, 4
        for r in range(rounds):
            barrier = threading.Barrier(writers)
            results: list[int | StoreError] = []

            def write(
                w: int,
                r: int = r,
                barrier: threading.Barrier = barrier,
                results: list[int | StoreError] = results,
            ) -> None:
                barrier.wait()
                try:
                    results.append(store.append("race", r, [ev(r * 10 + w, writer=w)]))
                except ConcurrencyError as exc:
                    results.append(exc)

            threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sum(isinstance(x, int) for x in results) == 1, results
        events = list(store.read("race"))
        assert [e.seq for e in events] == list(range(1, rounds + 1))

    def test_snapshots_keep_the_newest(self, store: EventStore) -> None:
        assert store.load_snapshot("s") is None
        store.save_snapshot("s", 5, b"five")
        store.save_snapshot("s", 9, b"\x00nine\xff")
        snap = store.load_snapshot("s")
        assert snap is not None
        assert (snap.seq, snap.state) == (9, b"\x00nine\xff")

    def test_a_long_stream_reads_back_whole(self, store: EventStore) -> None:
        total, chunk = 10_000, 500
        for start in range(0, total, chunk):
            store.append("long", start, [ev(n) for n in range(start + 1, start + chunk + 1)])
        seqs = [e.seq for e in store.read("long")]
        assert seqs == list(range(1, total + 1))
        assert sum(1 for _ in store.read("long", after_seq=9_990)) == 10

    def test_append_many_gives_each_stream_its_own_outcome(self, store: EventStore) -> None:
        store.append("b", 0, [ev(1)])
        outcomes = store.append_many(
            [
                AppendRequest("a", 0, [ev(1), ev(2)]),
                AppendRequest("b", 0, [ev(2)]),
                AppendRequest("c", 0, [ev(3)]),
            ]
        )
        assert outcomes[0] == 2
        assert isinstance(outcomes[1], ConcurrencyError)
        assert outcomes[2] == 1
        assert [e.seq for e in store.read("a")] == [1, 2]
        assert [e.data["n"] for e in store.read("b")] == [1]
        assert [e.seq for e in store.read("c")] == [1]

    def test_append_many_refuses_an_expected_version_past_the_stream(
        self, store: EventStore
    ) -> None:
        store.append_many([AppendRequest(s, 0, [ev(1)]) for s in "abc"])
        outcomes = store.append_many(
            [
                AppendRequest("a", 1, [ev(2)]),
                AppendRequest("b", 3, [ev(2)]),  # would leave a gap at 2 and 3
                AppendRequest("c", 1, [ev(2)]),
            ]
        )
        assert outcomes[0] == 2 and outcomes[2] == 2
        assert isinstance(outcomes[1], ConcurrencyError)
        assert [e.seq for e in store.read("b")] == [1]
        assert [e.data["n"] for e in store.read("c")] == [1, 2]

    def test_append_many_takes_one_request_per_stream(self, store: EventStore) -> None:
        with pytest.raises(ValueError):
            store.append_many([AppendRequest("c", 0, [ev(1)]), AppendRequest("c", 1, [ev(2)])])
        assert list(store.read("c")) == []

    def test_unicode_and_binary_payloads(self, store: EventStore) -> None:
        data = {"name": "Schatzsuche 🗺️ ẞ ﬁ", "blob": b"\x00\xff\x10", "big": 2**62}
        store.append("hunt-ü", 0, [NewEvent("t", 1, data, 1, {"note": "日本"})])
        (got,) = list(store.read("hunt-ü"))
        assert got.data == data
        assert got.metadata == {"note": "日本"}

    def test_everything_survives_a_reopen(self) -> None:
        store = self.make_store()
        store.append_many([AppendRequest("s", 0, [ev(1), ev(2)], [Link("p", "s", True, 2)])])
        store.save_snapshot("s", 2, b"state")
        store = self.reopen_store(store)
        try:
            assert [e.seq for e in store.read("s")] == [1, 2]
            snap = store.load_snapshot("s")
            assert snap is not None and snap.state == b"state"
            assert store.append("s", 2, [ev(3)]) == 3
            assert store.linked("p") == ["s"]
        finally:
            store.close()

    def test_links_are_stored_with_their_append_and_the_newest_seq_stands(
        self, store: EventStore
    ) -> None:
        joins = [
            AppendRequest(h, 0, [ev(1)], [Link("p1", h, True, 1), Link("p2", h, True, 1)])
            for h in ("h2", "h1")
        ]
        assert store.append_many(joins) == [1, 1]
        assert store.linked("p1") == ["h1", "h2"]
        leave = AppendRequest("h1", 1, [ev(2)], [Link("p1", "h1", False, 2)])
        assert store.append_many([leave]) == [2]
        assert store.linked("p1") == ["h2"]
        store.set_links([Link("p1", "h1", True, 1)])  # the join's link again, late: older
        assert store.linked("p1") == ["h2"]
        store.set_links([Link("p1", "h1", True, 3), Link("p2", "h2", False, 0)])
        assert store.linked("p1") == ["h1", "h2"]
        assert store.linked("p2") == ["h1", "h2"]  # older than the link it would undo
        assert store.linked("nobody") == []

    def test_a_refused_append_stores_none_of_its_links(self, store: EventStore) -> None:
        store.append("h1", 0, [ev(1)])
        outcomes = store.append_many(
            [
                AppendRequest("h1", 0, [ev(2)], [Link("p1", "h1", True, 2)]),
                AppendRequest("h2", 0, [ev(1)], [Link("p1", "h2", True, 1)]),
            ]
        )
        assert isinstance(outcomes[0], ConcurrencyError) and outcomes[1] == 1
        assert store.linked("p1") == ["h2"]
