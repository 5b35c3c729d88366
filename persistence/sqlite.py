"""SQLite backend: one file (the server opens one per shard: ``sqlite_partitions``).

WAL mode with ``synchronous=FULL`` by default: an "ok" survives a power cut,
not only a process crash. Group commit (one transaction per shard batch) is
what keeps that affordable.

With ``defer_sync`` a commit does not wait for the disk (``synchronous=NORMAL``,
which still syncs around checkpoints) and ``sync`` fsyncs the write-ahead log:
every commit that returned before it is then as durable as under ``FULL``.
A shard syncs after its batch's commit and before it answers, so the fsync is
no longer done inside the writers' lock (below), and one fsync covers the
commits other shards made meanwhile in the same file (when shards share one).
(Syncing on a thread of the shard instead, to go on deciding meanwhile, is
slower: the GIL and a second actor-loop turn per batch cost more than the
fsync. Figures: docs/performance.md.)

Events are appended to a table in the order they are stored (``pos``, the
rowid), and found by stream through a unique index on ``(stream, seq)``. A
shard's commit holds one event for each of many streams: keyed by ``(stream,
seq)`` itself (WITHOUT ROWID, as before), each event was inserted into the
middle of the table, in its stream's leaf, and full leaves of ~200-byte rows
split every few events; appended at the end, the rows fill pages in order and
only the index's small entries go to each stream's place. A file made before
keeps its layout (the same statements serve both).

Several processes (the shards) write the same file. SQLite lets one write at a
time, but a writer that finds the file locked sleeps in its busy handler in
steps that grow to 100 ms, so two busy writers stall each other for far longer
than their transactions take. So writers first take an advisory lock on ``<file>.lock``
(``flock``: the kernel frees it when a process dies, even by SIGKILL) and
take turns there, polled every 0.2 ms; SQLite's own lock is then free when
they ask for it. The busy timeout still bounds the wait for either lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from persistence.base import (
    AppendOutcome,
    AppendRequest,
    EventStore,
    Link,
    NewEvent,
    Snapshot,
    StoredEvent,
)
from persistence.codec import pack, unpack
from persistence.errors import ConcurrencyError, StoreError, StoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    pos      INTEGER PRIMARY KEY,
    stream   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    metadata BLOB    NOT NULL,
    ts       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    owner   TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    present INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (owner, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream TEXT    NOT NULL PRIMARY KEY,
    seq    INTEGER NOT NULL,
    state  BLOB    NOT NULL
) WITHOUT ROWID;
"""

# Only on a file made with ``pos``: one made before (``events`` WITHOUT ROWID, keyed by
# (stream, seq)) keeps its layout and needs no index.
EVENTS_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream ON events (stream, seq)"
INSERT_EVENTS = (
    "INSERT INTO events (stream, seq, type, version, data, metadata, ts) VALUES (?,?,?,?,?,?,?)"
)
READ_PAGE = 500
LOCK_POLL_S = 0.0002
CHECK_CHUNK = 400  # (stream, seq) pairs per query, well under SQLite's 32,766 variables

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]


class WriterLock:
    """Cross-process turn-taking for the writers of one SQLite file (see the module doc)."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600) if fcntl else -1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._fd < 0:
            yield
            return
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"another writer held the store for over {self.timeout_s:g} s"
                    ) from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SqliteEventStore(EventStore):
    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_s: float = 5.0,
        defer_sync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.defers_sync = defer_sync and synchronous.upper() == "FULL"
        if self.defers_sync:
            synchronous = "NORMAL"
        self._wal_fd = -1
        self._unsynced = False  # a transaction committed since the last sync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._writer = WriterLock(self.path, busy_timeout_s)
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
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
                if "pos" in columns:
                    self._db.execute(EVENTS_INDEX)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        self.check_one_per_stream(requests)
        with self._lock, self._writer.held():
            try:
                outcomes = self._append_all(requests)
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"append failed: {exc}") from exc
            self._unsynced = True
            return outcomes

    def _append_all(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        outcomes = self._append_as_expected(requests)
        if outcomes is None:  # some request was stale: redo them one by one
            db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            outcomes = [self._append_alone(req) for req in requests]
        db.execute("COMMIT")
        return outcomes

    def _append_as_expected(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome] | None:
        """The usual case (one writer per stream, so versions are as expected) in two
        statements: insert every row, then check each stream had its expected version.
        None when that is not so; the caller rolls back."""
        if any(not req.events for req in requests):
            return None
        rows = [
            _row(req.stream, req.expected_version + i, ev)
            for req in requests
            for i, ev in enumerate(req.events, 1)
        ]
        try:
            self._db.executemany(INSERT_EVENTS, rows)
        except sqlite3.IntegrityError:  # a stream was already past its expected version
            return None
        # ...or short of it, which the insert leaves as a gap: its last event must exist.
        before = [(r.stream, r.expected_version) for r in requests if r.expected_version]
        for i in range(0, len(before), CHECK_CHUNK):
            chunk = before[i : i + CHECK_CHUNK]
            values = ",".join("(?,?)" for _ in chunk)
            (found,) = self._db.execute(
                f"WITH last(stream, seq) AS (VALUES {values})"
                " SELECT COUNT(*) FROM last JOIN events USING (stream, seq)",
                [x for pair in chunk for x in pair],
            ).fetchone()
            if found != len(chunk):
                return None
        self._write_links([link for req in requests for link in req.links])
        return [req.expected_version + len(req.events) for req in requests]

    def _write_links(self, links: Sequence[Link]) -> None:
        if links:
            self._db.executemany(
                "INSERT INTO links VALUES (?,?,?,?) ON CONFLICT(owner, target) DO UPDATE"
                " SET present=excluded.present, seq=excluded.seq WHERE excluded.seq > seq",
                [(k.owner, k.target, int(k.present), k.seq) for k in links],
            )

    def _append_alone(self, req: AppendRequest) -> AppendOutcome:
        db = self._db
        db.execute("SAVEPOINT one")
        try:
            outcome: AppendOutcome = self._append_one(req)
            db.execute("RELEASE one")
        except StoreError as exc:
            db.execute("ROLLBACK TO one")
            db.execute("RELEASE one")
            outcome = exc
        return outcome

    def _append_one(self, req: AppendRequest) -> int:
        current = self._version(req.stream)
        if current != req.expected_version:
            raise ConcurrencyError(req.stream, req.expected_version, current)
        rows = [_row(req.stream, current + i, ev) for i, ev in enumerate(req.events, 1)]
        try:
            self._db.executemany(INSERT_EVENTS, rows)
        except sqlite3.IntegrityError as exc:
            raise ConcurrencyError(req.stream, req.expected_version) from exc
        self._write_links(req.links)
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
            rows = self._query(
                "read",
                "SELECT seq, type, version, data, metadata, ts FROM events"
                " WHERE stream=? AND seq>? ORDER BY seq LIMIT ?",
                (stream, last, READ_PAGE),
            )
            for seq, type_, version, data, metadata, ts in rows:
                yield StoredEvent(stream, seq, type_, version, unpack(data), ts, unpack(metadata))
            if len(rows) < READ_PAGE:
                return
            last = rows[-1][0]

    def _query(self, what: str, sql: str, params: tuple[object, ...]) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{what} failed: {exc}") from exc

    def _transaction(self, what: str, work: Callable[[], object]) -> None:
        """``work`` in one write transaction, in our turn among the writers."""
        with self._lock, self._writer.held():
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    work()
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"{what} failed: {exc}") from exc
            self._unsynced = True

    def save_snapshot(self, stream: str, seq: int, state: bytes) -> None:
        self.save_snapshots([Snapshot(stream, seq, state)])

    def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        """All in one transaction: one fsync however many entities were due."""
        rows = [(s.stream, s.seq, s.state) for s in snapshots]
        self._transaction(
            "snapshot",
            lambda: self._db.executemany(
                "INSERT INTO snapshots VALUES (?,?,?) ON CONFLICT(stream) DO UPDATE"
                " SET seq=excluded.seq, state=excluded.state WHERE excluded.seq > seq",
                rows,
            ),
        )

    def set_links(self, links: Sequence[Link]) -> None:
        self._transaction("links", lambda: self._write_links(links))

    def linked(self, owner: str) -> list[str]:
        sql = "SELECT target FROM links WHERE owner=? AND present ORDER BY target"
        return [str(r[0]) for r in self._query("links read", sql, (owner,))]

    def load_snapshot(self, stream: str) -> Snapshot | None:
        sql = "SELECT seq, state FROM snapshots WHERE stream=?"
        rows = self._query("snapshot read", sql, (stream,))
        return Snapshot(stream, int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def partition_count(self, wanted: int) -> int:
        """The number of partition files of this file's store: recorded in it, else
        ``wanted`` if the store is empty, else 1 (made before partitions existed)."""
        found: list[int] = []

        def settle() -> None:
            row = self._db.execute("SELECT value FROM meta WHERE key='partitions'").fetchone()
            if row is None:
                empty = self._db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None
                row = (wanted if empty else 1,)
                self._db.execute("INSERT INTO meta VALUES ('partitions', ?)", row)
            found.append(int(row[0]))

        self._transaction("partition count", settle)
        return found[0]

    def sync(self) -> None:
        """fsyncs the write-ahead log (SQLite keeps the file while a connection is open;
        a new one, after every connection closed, is opened again)."""
        if not (self.defers_sync and self._unsynced):
            return  # each commit synced itself, or none happened since the last sync
        self._unsynced = False
        wal = f"{self.path}-wal"
        try:
            if self._wal_fd < 0 or os.fstat(self._wal_fd).st_ino != os.stat(wal).st_ino:
                if self._wal_fd >= 0:
                    os.close(self._wal_fd)
                    self._wal_fd = -1
                self._wal_fd = os.open(wal, os.O_RDONLY)
            os.fsync(self._wal_fd)
        except OSError as exc:
            self._unsynced = True
            raise StoreUnavailable(f"cannot sync {wal}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._writer.close()
            if self._wal_fd >= 0:
                os.close(self._wal_fd)
                self._wal_fd = -1


def _row(stream: str, seq: int, ev: NewEvent) -> tuple[object, ...]:
    return (stream, seq, ev.type, ev.version, pack(ev.data), pack(ev.metadata), ev.timestamp)
