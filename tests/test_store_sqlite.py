from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from persistence import EventStore, StoreUnavailable
from persistence.base import AppendRequest, NewEvent
from persistence.factory import StoreConfig, open_store
from persistence.sqlite import SqliteEventStore
from tests.store_conformance import StoreConformance


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
        assert isinstance(store, SqliteEventStore)
        assert store.path == tmp_path / "events.sqlite3"
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
