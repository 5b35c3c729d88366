"""Cassandra backend: streams spread over bounded partitions, appends guarded by Paxos.

Tables (created with the keyspace when missing)::

    events    ((stream, partition_nr), seq)  head static, type, version, data, metadata, ts
    snapshots (stream, seq DESC)             state      -- newest first, older ones deleted
    links     (owner, target)                           -- written with USING TIMESTAMP seq

Which partition an append goes to
    An append with ``expected_version = e`` is written *whole* into partition
    ``e // PARTITION_SIZE``, the partition of its first event's nominal slot
    ``(seq - 1) // PARTITION_SIZE``. An append that crosses the nominal boundary
    is not split (splitting would make it two writes, and a crash between them
    would leave half an append), so a partition holds at most
    ``2 * PARTITION_SIZE - 1`` events. Appends are limited to ``PARTITION_SIZE``
    events, hence non-empty partitions form a prefix ``0..K`` of the stream and
    event ``x`` lives in partition ``(x - 1) // S`` or the one before.

The guard: one conditional single-partition batch per append
    Every partition has a static column ``head``: the stream's version after the
    last append written into it. An append is one Paxos (LWT) batch on one
    partition: ``UPDATE events SET head = e + n ... IF head = <expected>`` plus
    the ``n`` plain inserts of its events. Paxos applies the batch whole or not at
    all, and serialises every append of the partition, so of two writers racing
    with the same ``e`` exactly one sees its condition hold; the other gets
    ``[applied] = False`` with the current head, i.e. ``ConcurrencyError``.

    * ``e`` inside the partition (``e > q * S`` with ``q = e // S``): the
      condition is ``head = e``. If the head is ``e`` the stream's version is
      ``e`` (a later partition only gets events once this one's head has passed
      its nominal end, which needs ``e >= (q + 1) * S``).
    * ``e`` on the partition's start, or ``head`` still null: the partition is
      empty and the stream's version is the head of partition ``q - 1``. That
      partition is *closed* once its head reaches ``q * S``: no append can change
      it any more (they need ``head = e`` with ``e < q * S``). So a SERIAL read of
      it that equals ``e`` is final, and the write is ``IF head = null`` on
      partition ``q``: of two writers that both read it, Paxos lets one win.

    A stream's version is never held in a separate row (a ``stream_heads``
    table could not be updated in the same LWT as the events of another
    partition) and appends never write two partitions, so nothing can be left
    half-written.

Unknown outcomes
    Every driver or server error becomes ``StoreUnavailable``. A ``WriteTimeout``
    of an LWT means the append may or may not have landed: the caller retries
    with the same ``expected_version`` and either lands once or gets
    ``ConcurrencyError`` (the head moved), never a duplicate.

Links
    A request's links are written once its LWT applied, each ``USING TIMESTAMP``
    its seq, so that of two writes of one link the newer seq wins whatever the
    order they land in. They cannot share the LWT (another partition): if they
    fail, the request's outcome is ``StoreUnavailable`` although its events are
    stored, as after a timeout; the caller's retry, answered from its
    idempotency memory, writes them again with ``set_links``.

Consistency: LWTs run with serial consistency ``SERIAL`` and commit at
``QUORUM``; reads of events use ``QUORUM``, reads of a head ``SERIAL``. The
server's ``batch_size_fail_threshold`` (default 50 KiB) must admit the largest
append (the local node started by ``scripts/cassandra`` sets 4 MiB).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import BatchStatement, BatchType

from persistence.base import (
    AppendOutcome,
    AppendRequest,
    EventStore,
    Link,
    Snapshot,
    StoredEvent,
)
from persistence.codec import pack, unpack
from persistence.errors import ConcurrencyError, StoreUnavailable

RECONNECT_MAX_S = 5.0
PARTITION_SIZE = 5_000
READ_PAGE = 500
DDL_TIMEOUT_S = 30.0

_KEYSPACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def _schema(ks: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.events (
            stream       text,
            partition_nr bigint,
            seq          bigint,
            head         bigint STATIC,
            type         text,
            version      int,
            data         blob,
            metadata     blob,
            ts           bigint,
            PRIMARY KEY ((stream, partition_nr), seq)
        ) WITH CLUSTERING ORDER BY (seq ASC)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.snapshots (
            stream text,
            seq    bigint,
            state  blob,
            PRIMARY KEY (stream, seq)
        ) WITH CLUSTERING ORDER BY (seq DESC)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.links (
            owner  text,
            target text,
            PRIMARY KEY (owner, target)
        )""",
    ]


@dataclass(slots=True)
class _Append:
    """One request's way through the rounds of ``append_many``."""

    req: AppendRequest
    step: str  # "check_cur" | "check_prev" | "cas_eq" | "cas_null" | "done"
    outcome: AppendOutcome | None = None


class CassandraEventStore(EventStore):
    def __init__(
        self,
        hosts: Sequence[str],
        keyspace: str,
        replication: Mapping[str, str | int],
        request_timeout_s: float = 5.0,
        *,
        connect_timeout_s: float = 5.0,
        partition_size: int = PARTITION_SIZE,
    ) -> None:
        if not _KEYSPACE_NAME.match(keyspace):
            raise ValueError(f"invalid keyspace name {keyspace!r}")
        if not hosts:
            raise ValueError("no Cassandra hosts given")
        self.keyspace = keyspace
        self.partition_size = partition_size
        points = [_host_port(h) for h in hosts]
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            request_timeout=request_timeout_s,
            consistency_level=ConsistencyLevel.QUORUM,
            serial_consistency_level=ConsistencyLevel.SERIAL,
        )
        self._cluster = Cluster(
            contact_points=points,
            port=points[0][1],
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=connect_timeout_s,
            control_connection_timeout=connect_timeout_s,
            # The driver's default backoff grows to 10 minutes; after an outage the
            # store should be back within seconds of the node.
            reconnection_policy=ExponentialReconnectionPolicy(0.5, RECONNECT_MAX_S),
        )
        self._closed = False
        try:
            self._session = self._cluster.connect()
            self._create_schema(replication)
            self._prepare()
        except Exception as exc:
            self._cluster.shutdown()
            raise StoreUnavailable(f"cannot open Cassandra keyspace {keyspace!r}: {exc}") from exc

    # -- setup ------------------------------------------------------------------------------

    def _create_schema(self, replication: Mapping[str, str | int]) -> None:
        options = ", ".join(
            f"'{_cql_str(k)}': '{_cql_str(str(v))}'" for k, v in replication.items()
        )
        self._session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = {{{options}}}",
            timeout=DDL_TIMEOUT_S,
        )
        for ddl in _schema(self.keyspace):
            self._session.execute(ddl, timeout=DDL_TIMEOUT_S)

    def _prepare(self) -> None:
        ks, prepare = self.keyspace, self._session.prepare
        self._cas_head = prepare(
            f"UPDATE {ks}.events SET head = ? WHERE stream = ? AND partition_nr = ? IF head = ?"
        )
        self._insert = prepare(
            f"INSERT INTO {ks}.events (stream, partition_nr, seq, type, version, data, metadata,"
            " ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._read_head = prepare(
            f"SELECT head FROM {ks}.events WHERE stream = ? AND partition_nr = ? LIMIT 1"
        )
        self._read_head.consistency_level = ConsistencyLevel.SERIAL
        self._read_events = prepare(
            f"SELECT seq, type, version, data, metadata, ts FROM {ks}.events"
            " WHERE stream = ? AND partition_nr = ? AND seq > ?"
        )
        self._read_events.fetch_size = READ_PAGE
        self._save_snap = prepare(
            f"INSERT INTO {ks}.snapshots (stream, seq, state) VALUES (?, ?, ?)"
        )
        self._prune_snaps = prepare(f"DELETE FROM {ks}.snapshots WHERE stream = ? AND seq < ?")
        self._load_snap = prepare(f"SELECT seq, state FROM {ks}.snapshots WHERE stream = ? LIMIT 1")
        self._link = prepare(
            f"INSERT INTO {ks}.links (owner, target) VALUES (?, ?) USING TIMESTAMP ?"
        )
        self._unlink = prepare(
            f"DELETE FROM {ks}.links USING TIMESTAMP ? WHERE owner = ? AND target = ?"
        )
        self._linked = prepare(f"SELECT target FROM {ks}.links WHERE owner = ?")

    # -- appends ----------------------------------------------------------------------------

    def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        self.check_one_per_stream(requests)
        size = self.partition_size
        for req in requests:
            if len(req.events) > size:
                raise ValueError(
                    f"an append holds at most {size} events, got {len(req.events)} for"
                    f" {req.stream!r}"
                )
        work = [_Append(req, self._first_step(req)) for req in requests]
        for item in work:
            if item.req.expected_version < 0:
                self._finish(item, ConcurrencyError(item.req.stream, item.req.expected_version))
        # Each round sends the next statement of every unfinished request at once, then waits
        # for all of them; a request needs at most three rounds (cas_eq, check_prev, cas_null).
        while pending := [w for w in work if w.step != "done"]:
            statements = [self._statement(item) for item in pending]  # binds all, sends none
            futures: list[tuple[_Append, ResponseFuture | None]] = []
            for item, statement in zip(pending, statements, strict=True):
                try:
                    futures.append((item, self._session.execute_async(statement)))
                except Exception as exc:
                    self._finish(item, StoreUnavailable(f"append to {item.req.stream!r}: {exc}"))
                    futures.append((item, None))
            for item, future in futures:
                if future is None:
                    continue
                try:
                    rows = future.result()
                except Exception as exc:
                    self._finish(item, StoreUnavailable(f"append to {item.req.stream!r}: {exc}"))
                    continue
                self._advance(item, rows)
        self._link_appended(work)
        return [w.outcome if w.outcome is not None else StoreUnavailable("lost") for w in work]

    def _link_appended(self, work: list[_Append]) -> None:
        linking = [w for w in work if w.req.links and isinstance(w.outcome, int)]
        failures = self._write_links([(w, k) for w in linking for k in w.req.links])
        for item, exc in failures.items():
            item.outcome = StoreUnavailable(
                f"links of {item.req.stream!r} failed (its events are stored): {exc}"
            )

    def _write_links(self, links: Sequence[tuple[Any, Link]]) -> dict[Any, Exception]:
        """Every link at once; the first failure of each owner key (any hashable)."""
        futures = []
        for key, k in links:
            statement = (
                self._link.bind((k.owner, k.target, k.seq))
                if k.present
                else self._unlink.bind((k.seq, k.owner, k.target))
            )
            try:
                futures.append((key, self._session.execute_async(statement)))
            except Exception as exc:
                futures.append((key, exc))
        failures: dict[Any, Exception] = {}
        for key, future in futures:
            try:
                if isinstance(future, Exception):
                    raise future
                future.result()
            except Exception as exc:
                failures.setdefault(key, exc)
        return failures

    def set_links(self, links: Sequence[Link]) -> None:
        if self._closed:
            raise StoreUnavailable("store is closed")
        failures = self._write_links([(None, k) for k in links])
        if failures:
            raise StoreUnavailable(f"links failed: {failures[None]}")

    def linked(self, owner: str) -> list[str]:
        rows = self._run(self._linked.bind((owner,)), f"links of {owner!r}")
        return sorted(str(r.target) for r in rows)

    def _first_step(self, req: AppendRequest) -> str:
        e, size = req.expected_version, self.partition_size
        if not req.events:
            return "check_cur"
        if e == 0:
            return "cas_null"
        if e % size == 0:
            return "check_prev"
        return "cas_eq"

    def _statement(self, item: _Append) -> Any:
        req, size = item.req, self.partition_size
        q = req.expected_version // size
        if item.step == "check_prev":
            return self._read_head.bind((req.stream, q - 1))
        if item.step == "check_cur":
            return self._read_head.bind((req.stream, q))
        batch = BatchStatement(
            batch_type=BatchType.UNLOGGED,
            consistency_level=ConsistencyLevel.QUORUM,
            serial_consistency_level=ConsistencyLevel.SERIAL,
        )
        expected = req.expected_version if item.step == "cas_eq" else None
        new_head = req.expected_version + len(req.events)
        batch.add(self._cas_head, (new_head, req.stream, q, expected))
        for i, ev in enumerate(req.events, 1):
            batch.add(
                self._insert,
                (
                    req.stream,
                    q,
                    req.expected_version + i,
                    ev.type,
                    ev.version,
                    pack(ev.data),
                    pack(ev.metadata),
                    ev.timestamp,
                ),
            )
        return batch

    def _advance(self, item: _Append, rows: Any) -> None:
        req, size = item.req, self.partition_size
        e = req.expected_version
        q = e // size
        head = _head_of(rows.one())
        if item.step == "check_prev":
            # Partition q - 1 is final once its head reached q * size (see module doc).
            if head != e:
                actual = head if head is not None and head < q * size else None
                self._finish(item, ConcurrencyError(req.stream, e, actual))
            elif req.events:
                item.step = "cas_null"
            else:
                self._finish(item, e)
            return
        if item.step == "check_cur":  # an append of no events only confirms the version
            if head == e or (head is None and e == 0):
                self._finish(item, e)
            elif head is None and q > 0:
                item.step = "check_prev"
            else:
                self._finish(item, ConcurrencyError(req.stream, e, _known(head, q, size)))
            return
        if rows.was_applied:
            self._finish(item, e + len(req.events))
        elif item.step == "cas_eq" and head is None:
            # Partition q is empty: the version is partition q - 1's head (or 0 for q == 0).
            if q == 0:
                self._finish(item, ConcurrencyError(req.stream, e, 0))
            else:
                item.step = "check_prev"
        else:
            self._finish(item, ConcurrencyError(req.stream, e, _known(head, q, size)))

    @staticmethod
    def _finish(item: _Append, outcome: AppendOutcome) -> None:
        item.outcome = outcome
        item.step = "done"

    # -- reads ------------------------------------------------------------------------------

    def read(self, stream: str, after_seq: int = 0) -> Iterator[StoredEvent]:
        size = self.partition_size
        last = max(after_seq, 0)
        # Event x lives in partition (x - 1) // size or the one before it (see module doc).
        partition = max(0, last // size - 1)
        while partition <= last // size:
            for row in self._rows(stream, partition, last):
                seq, type_, version, data, metadata, ts = row
                last = seq
                yield StoredEvent(stream, seq, type_, version, unpack(data), ts, unpack(metadata))
            partition += 1

    def _rows(self, stream: str, partition: int, after: int) -> Iterator[tuple[Any, ...]]:
        paging_state: bytes | None = None
        while True:
            if self._closed:
                raise StoreUnavailable("store is closed")
            try:
                result = self._session.execute(
                    self._read_events, (stream, partition, after), paging_state=paging_state
                )
                rows = list(result.current_rows)
                paging_state = result.paging_state
            except Exception as exc:
                raise StoreUnavailable(f"read of {stream!r} failed: {exc}") from exc
            yield from rows
            if paging_state is None:
                return

    # -- snapshots --------------------------------------------------------------------------

    def save_snapshot(self, stream: str, seq: int, state: bytes) -> None:
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(self._save_snap, (stream, seq, state))
        batch.add(self._prune_snaps, (stream, seq))
        self._run(batch, f"snapshot of {stream!r}")

    def load_snapshot(self, stream: str) -> Snapshot | None:
        row = self._run(self._load_snap.bind((stream,)), f"snapshot read of {stream!r}").one()
        return None if row is None else Snapshot(stream, int(row.seq), bytes(row.state))

    def _run(self, statement: Any, what: str) -> Any:
        if self._closed:
            raise StoreUnavailable("store is closed")
        try:
            return self._session.execute(statement)
        except Exception as exc:
            raise StoreUnavailable(f"{what} failed: {exc}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cluster.shutdown()


def _head_of(row: Any) -> int | None:
    if row is None:
        return None
    head = getattr(row, "head", None)
    return None if head is None else int(head)


def _known(head: int | None, q: int, size: int) -> int | None:
    """The stream's version, when partition q's head is certainly it."""
    return head if head is not None and head < (q + 1) * size else None


def _cql_str(value: str) -> str:
    return value.replace("'", "''")


def _host_port(host: str) -> tuple[str, int]:
    name, sep, port = host.rpartition(":")
    if not sep:
        return host, 9042
    return name.strip("[]"), int(port)


__all__ = ["PARTITION_SIZE", "CassandraEventStore"]
