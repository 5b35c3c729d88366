from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from actors.game.ids import hunt_replies_stream, hunt_stream, player_stream
from actors.placement import shard_for
from persistence import EventStore, StoreUnavailable
from persistence.base import AppendRequest, Link, NewEvent
from persistence.factory import StoreConfig, open_store
from persistence.sqlite import SqliteEventStore
from persistence.sqlite_partitions import PartitionedSqliteStore, partition_file, partition_of
from server.config import Settings
from tests.persistence.conformance import StoreConformance


class TestSqliteConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def make_store(self) -> EventStore:
        return SqliteEventStore(self.dir / "events.sqlite3")

    def reopen_store(self, store: EventStore) -> EventStore:
        store.close()
        return SqliteEventStore(self.dir / "events.sqlite3")


class TestSqliteDeferredSyncConformance(TestSqliteConformance):
    """The same store as the shards open it: commits sync only when asked."""

    def make_store(self) -> EventStore:
        return SqliteEventStore(self.dir / "events.sqlite3", defer_sync=True)

    def reopen_store(self, store: EventStore) -> EventStore:
        store.sync()
        store.close()
        return self.make_store()


# The events table as files made before ``pos`` have it.
OLD_EVENTS = """CREATE TABLE events (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, version INTEGER NOT NULL,
    data BLOB NOT NULL, metadata BLOB NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID"""


class TestSqliteOldLayoutConformance(TestSqliteConformance):
    """A file made with the events table keyed by (stream, seq) works as before."""

    def make_store(self) -> EventStore:
        path = self.dir / "events.sqlite3"
        if not path.exists():
            with contextlib.closing(sqlite3.connect(path)) as db:
                db.execute(OLD_EVENTS)
        return SqliteEventStore(path)


def _layout(path: Path) -> tuple[set[str], set[str]]:
    """The events table's columns and the indexes the store made on it."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        sql = "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='events' AND sql!=''"
        return columns, {row[0] for row in db.execute(sql)}


def test_a_new_file_appends_events_in_order_and_finds_them_by_stream(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = SqliteEventStore(path)
    store.append_many([AppendRequest(s, 0, [NewEvent("t", 1, {}, 1)]) for s in ("b", "a", "c")])
    store.close()
    columns, indexes = _layout(path)
    assert "pos" in columns and indexes == {"events_by_stream"}
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT stream FROM events ORDER BY pos").fetchall() == [
            ("b",),
            ("a",),
            ("c",),
        ]
        plan = db.execute("EXPLAIN QUERY PLAN SELECT seq FROM events WHERE stream='a' AND seq>0")
        assert "events_by_stream" in " ".join(str(row) for row in plan)
        with pytest.raises(sqlite3.IntegrityError):  # (stream, seq) stays unique
            db.execute(
                "INSERT INTO events (stream, seq, type, version, data, metadata, ts)"
                " VALUES ('a', 1, 't', 1, x'', x'', 1)"
            )


def test_a_file_made_before_pos_keeps_its_layout_and_gets_no_index(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(OLD_EVENTS)
    store = SqliteEventStore(path)
    assert store.append("s", 0, [NewEvent("t", 1, {"i": 1}, 1)]) == 1
    store.close()
    assert _layout(path) == ({"stream", "seq", "type", "version", "data", "metadata", "ts"}, set())


def test_a_table_made_without_its_index_gets_it_when_next_opened(tmp_path: Path) -> None:
    """As if the process stopped between the table and its index."""
    path = tmp_path / "e.db"
    SqliteEventStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP INDEX events_by_stream")
    SqliteEventStore(path).close()
    assert _layout(path)[1] == {"events_by_stream"}


def test_a_deferred_sync_store_commits_without_fsync_and_syncs_its_log(tmp_path: Path) -> None:
    full = SqliteEventStore(tmp_path / "e.db")
    deferred = SqliteEventStore(tmp_path / "e.db", defer_sync=True)
    unsynced = SqliteEventStore(tmp_path / "e.db", synchronous="OFF", defer_sync=True)
    try:
        assert not full.defers_sync and not unsynced.defers_sync and deferred.defers_sync
        deferred.sync()
        assert deferred._wal_fd == -1  # nothing committed yet: nothing to sync
        pragma = "PRAGMA synchronous"
        assert full._db.execute(pragma).fetchone()[0] == 2  # FULL
        assert deferred._db.execute(pragma).fetchone()[0] == 1  # NORMAL
        deferred.append("s", 0, [NewEvent("e", 1, {"i": 1}, 1)])
        deferred.sync()
        wal = os.stat(tmp_path / "e.db-wal")
        assert os.fstat(deferred._wal_fd).st_ino == wal.st_ino  # fsyncs the log itself
        full.sync()  # a no-op where commits sync themselves
        assert [e.data for e in full.read("s")] == [{"i": 1}]
    finally:
        for store in (full, deferred, unsynced):
            store.close()


def test_the_file_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    SqliteEventStore(tmp_path / "e.db").close()
    db = sqlite3.connect(tmp_path / "e.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_is_the_default_backend(tmp_path: Path) -> None:
    store = open_store(StoreConfig(data_dir=tmp_path))
    try:
        assert isinstance(store, PartitionedSqliteStore) and len(store.parts) == 1
        assert store.parts[0].path == tmp_path / "events.sqlite3"
    finally:
        store.close()


def test_a_failing_write_raises_unavailable_and_keeps_nothing(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "e.db")
    store.append("s", 0, [NewEvent("t", 1, {}, 1)])
    blocker = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past our timeout
    slow = SqliteEventStore(tmp_path / "e.db", busy_timeout_s=0.05)
    with pytest.raises(StoreUnavailable):
        slow.append("s", 1, [NewEvent("t", 1, {}, 2)])
    blocker.execute("ROLLBACK")
    assert slow.append("s", 1, [NewEvent("t", 1, {}, 3)]) == 2
    assert [e.timestamp for e in store.read("s")] == [1, 3]
    for s in (store, slow):
        s.close()


def _open_and_close(path: str, results: Any) -> None:
    try:
        SqliteEventStore(path).close()
        results.put("ok")
    except StoreUnavailable as exc:
        results.put(str(exc))


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(25):  # shards open the store together at every server start
        path = str(tmp_path / f"e{round_}.db")
        results = ctx.Queue()
        procs = [ctx.Process(target=_open_and_close, args=(path, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        failures += [r for r in (results.get(timeout=5) for _ in procs) if r != "ok"]
    assert failures == []


def test_writers_take_turns_on_the_lock_file_and_time_out_as_unavailable(tmp_path: Path) -> None:
    # A writer of another process holding the turn (its flock on <file>.lock) keeps us out
    # for no longer than the busy timeout; once it lets go we write again.
    store = SqliteEventStore(tmp_path / "e.db", busy_timeout_s=0.05)
    other = os.open(tmp_path / "e.db.lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    with pytest.raises(StoreUnavailable, match="another writer"):
        store.append("s", 0, [NewEvent("t", 1, {}, 1)])
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    assert store.append("s", 0, [NewEvent("t", 1, {}, 2)]) == 1
    store.close()


def _append_batches(path: str, prefix: str, batches: int) -> None:
    store = SqliteEventStore(path)
    streams = [f"{prefix}-{i}" for i in range(20)]
    for n in range(batches):
        store.append_many([AppendRequest(s, n, [NewEvent("t", 1, {}, n)]) for s in streams])
    store.close()


def test_two_writer_processes_both_finish_with_every_event(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "e.db")
    procs = [ctx.Process(target=_append_batches, args=(path, p, 300)) for p in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    store = SqliteEventStore(path)
    for prefix in "ab":
        for i in range(20):
            assert [e.timestamp for e in store.read(f"{prefix}-{i}")] == list(range(300))
    store.close()


class TestPartitionedConformance(StoreConformance):
    """The store as the server opens it: one file per shard (three here)."""

    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def make_store(self) -> EventStore:
        return PartitionedSqliteStore(self.dir, 3, defer_sync=True)

    def reopen_store(self, store: EventStore) -> EventStore:
        store.sync()
        store.close()
        return self.make_store()


def test_a_stream_lives_in_the_partition_of_the_shard_that_hosts_its_entity() -> None:
    for count in (1, 2, 3, 5):
        for n in range(200):
            entity = f"e{n}x{count}"
            for kind, stream in (
                ("hunt", hunt_stream(entity)),
                ("hunt", hunt_replies_stream(entity)),
                ("player", player_stream(entity)),
            ):
                assert partition_of(stream, count) == shard_for(kind, entity, count), stream


def _streams_by_file(directory: Path) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for index in range(3):
        db = sqlite3.connect(partition_file(directory, index))
        rows = db.execute("SELECT stream FROM events UNION SELECT target FROM links").fetchall()
        found[index] = {r[0] for r in rows}
        db.close()
    return found


def test_each_partition_file_holds_its_own_streams_and_the_links_to_them(tmp_path: Path) -> None:
    store = PartitionedSqliteStore(tmp_path, 3)
    hunts = [hunt_stream(f"h{n}") for n in range(12)]
    try:
        outcomes = store.append_many(
            [
                AppendRequest(h, 0, [NewEvent("e", 1, {"h": h}, 1)], [Link("player-p", h, True, 1)])
                for h in hunts
            ]
        )
        assert outcomes == [1] * len(hunts)
        assert store.linked("player-p") == sorted(hunts)
        assert all(next(iter(store.read(h))).data == {"h": h} for h in hunts)
    finally:
        store.close()
    by_file = _streams_by_file(tmp_path)
    assert set().union(*by_file.values()) == set(hunts)
    for index, streams in by_file.items():
        assert streams and all(partition_of(s, 3) == index for s in streams), by_file


def test_a_link_to_another_partition_is_written_there(tmp_path: Path) -> None:
    store = PartitionedSqliteStore(tmp_path, 3)
    there = next(h for h in (f"hunt-{n}" for n in range(50)) if partition_of(h, 3) == 2)
    here = next(s for s in (f"other-{n}" for n in range(50)) if partition_of(s, 3) == 0)
    try:
        link = Link("player-p", there, True, 1)
        assert store.append_many([AppendRequest(here, 0, [NewEvent("e", 1, {}, 1)], [link])]) == [1]
        store.set_links([Link("player-p", there, False, 2)])
        assert store.linked("player-p") == []
        store.set_links([Link("player-p", there, True, 3)])
        assert store.linked("player-p") == [there]
    finally:
        store.close()
    assert _streams_by_file(tmp_path) == {0: {here}, 1: set(), 2: {there}}


def test_the_partition_count_is_fixed_when_the_directory_is_made(tmp_path: Path) -> None:
    store = PartitionedSqliteStore(tmp_path, 3)
    streams = [f"hunt-{n}" for n in range(10)]
    for s in streams:
        store.append(s, 0, [NewEvent("e", 1, {"s": s}, 1)])
    store.close()
    again = PartitionedSqliteStore(tmp_path, 5)  # more shards now: the files stay as made
    try:
        assert len(again.parts) == 3
        assert [next(iter(again.read(s))).data for s in streams] == [{"s": s} for s in streams]
    finally:
        again.close()
    assert sorted(p.name for p in tmp_path.glob("events*.sqlite3")) == [
        "events.1.sqlite3",
        "events.2.sqlite3",
        "events.sqlite3",
    ]


def test_a_store_made_before_partitions_stays_one_file(tmp_path: Path) -> None:
    old = SqliteEventStore(tmp_path / "events.sqlite3")
    old.append("hunt-a", 0, [NewEvent("e", 1, {"old": True}, 1)])
    old.set_links([Link("player-p", "hunt-a", True, 1)])
    old.close()
    store = PartitionedSqliteStore(tmp_path, 4)
    try:
        assert len(store.parts) == 1
        assert [e.data for e in store.read("hunt-a")] == [{"old": True}]
        assert store.linked("player-p") == ["hunt-a"]
        assert store.append("hunt-b", 0, [NewEvent("e", 1, {}, 1)]) == 1
    finally:
        store.close()
    assert [p.name for p in tmp_path.glob("events*.sqlite3")] == ["events.sqlite3"]


def test_one_locked_partition_fails_only_its_own_requests(tmp_path: Path) -> None:
    store = PartitionedSqliteStore(tmp_path, 2, busy_timeout_s=0.05)
    a = next(s for s in (f"hunt-{n}" for n in range(50)) if partition_of(s, 2) == 0)
    b = next(s for s in (f"hunt-{n}" for n in range(50)) if partition_of(s, 2) == 1)
    lock = os.open(f"{partition_file(tmp_path, 1)}.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another writer holds partition 1
        requests = [AppendRequest(s, 0, [NewEvent("e", 1, {}, 1)]) for s in (b, a)]
        got = store.append_many(requests)
        assert isinstance(got[0], StoreUnavailable) and got[1] == 1
        with pytest.raises(StoreUnavailable):  # nothing could be attempted: it raises
            store.append_many(requests[:1])
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert store.append_many(requests[:1]) == [1]
        assert [e.seq for s in (a, b) for e in store.read(s)] == [1, 1]
    finally:
        os.close(lock)
        store.close()


def test_the_server_opens_one_partition_per_shard(tmp_path: Path) -> None:
    config = Settings(shards=3, data_dir=tmp_path).store_config()
    assert config.sqlite_partitions == 3
    store = open_store(config)
    try:
        assert isinstance(store, PartitionedSqliteStore) and len(store.parts) == 3
    finally:
        store.close()
