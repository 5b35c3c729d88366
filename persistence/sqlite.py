"""SQLite backend: the embedded default, one file under the data directory.

WAL mode with ``synchronous=FULL`` by default: an "ok" survives a power cut,
not only a process crash. Group commit (one transaction per shard batch) is
what keeps that affordable. Several processes may open the same file; SQLite
lets one write at a time and the busy timeout makes the others wait their turn.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from persistence.base import (
    AppendOutcome,
    AppendRequest,
    EventStore,
    NewEvent,
    Snapshot,
    StoredEvent,
)
from persistence.codec import pack, unpack
from persistence.errors import ConcurrencyError, StoreError, StoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    stream   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    metadata BLOB    NOT NULL,
    ts       INTEGER NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream TEXT    NOT NULL PRIMARY KEY,
    seq    INTEGER NOT NULL,
    state  BLOB    NOT NULL
) WITHOUT ROWID;
"""

READ_PAGE = 500


class SqliteEventStore(EventStore):
    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", busy_timeout_s: float = 5.0
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._set_up(synchronous, time.monotonic() + busy_timeout_s)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc

    def _set_up(self, synchronous: str, deadline: float) -> None:
        # Switching to WAL can fail at once with "database is locked" (SQLite does not
        # call its busy handler there) while another process opens the same file.
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous}")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        with self._lock:
            try:
                return self._append_all(requests)
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"append failed: {exc}") from exc

    def _append_all(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        outcomes: list[AppendOutcome] = []
        for req in requests:
            db.execute("SAVEPOINT one")
            try:
                outcomes.append(self._append_one(req))
                db.execute("RELEASE one")
            except StoreError as exc:
                db.execute("ROLLBACK TO one")
                db.execute("RELEASE one")
                outcomes.append(exc)
        db.execute("COMMIT")
        return outcomes

    def _append_one(self, req: AppendRequest) -> int:
        current = self._version(req.stream)
        if current != req.expected_version:
            raise ConcurrencyError(req.stream, req.expected_version, current)
        rows = [_row(req.stream, current + i, ev) for i, ev in enumerate(req.events, 1)]
        try:
            self._db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
        except sqlite3.IntegrityError as exc:
            raise ConcurrencyError(req.stream, req.expected_version) from exc
        return current + len(rows)

    def _version(self, stream: str) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events WHERE stream=?", (stream,)).fetchone()
        return int(row[0] or 0)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def read(self, stream: str, after_seq: int = 0) -> Iterator[StoredEvent]:
        last = after_seq
        while True:
            with self._lock:
                try:
                    rows = self._db.execute(
                        "SELECT seq, type, version, data, metadata, ts FROM events"
                        " WHERE stream=? AND seq>? ORDER BY seq LIMIT ?",
                        (stream, last, READ_PAGE),
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"read failed: {exc}") from exc
            for seq, type_, version, data, metadata, ts in rows:
                yield StoredEvent(stream, seq, type_, version, unpack(data), ts, unpack(metadata))
            if len(rows) < READ_PAGE:
                return
            last = rows[-1][0]

    def save_snapshot(self, stream: str, seq: int, state: bytes) -> None:
        self.save_snapshots([Snapshot(stream, seq, state)])

    def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        """All in one transaction: one fsync however many entities were due."""
        rows = [(s.stream, s.seq, s.state) for s in snapshots]
        with self._lock:
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(
                        "INSERT INTO snapshots VALUES (?,?,?) ON CONFLICT(stream) DO UPDATE"
                        " SET seq=excluded.seq, state=excluded.state WHERE excluded.seq > seq",
                        rows,
                    )
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"snapshot failed: {exc}") from exc

    def load_snapshot(self, stream: str) -> Snapshot | None:
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT seq, state FROM snapshots WHERE stream=?", (stream,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"snapshot read failed: {exc}") from exc
        return None if row is None else Snapshot(stream, int(row[0]), bytes(row[1]))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(stream: str, seq: int, ev: NewEvent) -> tuple[object, ...]:
    return (stream, seq, ev.type, ev.version, pack(ev.data), pack(ev.metadata), ev.timestamp)
