from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from persistence import EventStore, StoreUnavailable
from persistence.base import NewEvent
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
