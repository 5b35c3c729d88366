"""The heart of a ShardHost, free of Thespian so it can be tested directly.

``ShardCore.handle`` takes one batch of requests: every entity decides in
turn on its speculative state, the whole batch is group-committed with one
``append_many``, and only then do replies and events leave. An entity whose
append failed is reloaded from the store and its commands are answered
``unavailable``: nothing half-applied stays in memory.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from actors.game.hunt_state import HuntState
from actors.game.ids import EntityKind
from actors.messages import Request, ShardReply, Subscribe, Unsubscribe
from actors.placement import shard_for
from actors.shard.entity import Entity, HuntEntity, load_hunt, load_player
from actors.shard.timers import TimerLog, running_timers
from actors.shard.work import Answer, Work, hunt_work, player_hunts, player_work, query_reply
from persistence.base import AppendOutcome, AppendRequest, EventStore, Snapshot
from persistence.errors import StoreError
from protocol.errors import ErrorCode

log = logging.getLogger("treasure.shard")
EXIT_SYNC_FAILED = 70

Addressed = tuple[int, ShardReply]  # a reply and the request id it answers
Pushed = tuple[str, int, bytes]
UNAVAILABLE = {"t": "error", "code": ErrorCode.UNAVAILABLE, "message": "cannot store events now"}
INTERNAL = {"t": "error", "code": ErrorCode.INTERNAL, "message": "internal error"}


def stop_the_shard(exc: StoreError) -> None:  # pragma: no cover - ends the process
    """As PostgreSQL does on a failed fsync: the Director recreates the shard, which
    reloads what is stored; the gateways resend what had no reply."""
    log.critical("the store could not sync (%s): the shard stops, unacknowledged", exc)
    logging.shutdown()
    os._exit(EXIT_SYNC_FAILED)


@dataclass
class Output:
    replies: dict[str, list[Addressed]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list[tuple[str, int, bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def reply(self, gateway: str | None, req: int, msg: ShardReply) -> None:
        if gateway is not None:
            self.replies[gateway].append((req, msg))


BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass
class Stats:
    batches: int = 0
    messages: int = 0
    events_appended: int = 0
    store_errors: int = 0
    activations: int = 0
    passivations: int = 0
    largest_batch: int = 0
    appends: int = 0
    append_seconds: float = 0.0
    batch_counts: list[int] = field(default_factory=lambda: [0] * len(BATCH_BUCKETS))
    append_counts: list[int] = field(default_factory=lambda: [0] * len(APPEND_BUCKETS))

    def batch(self, size: int) -> None:
        self.batches += 1
        self.messages += size
        self.largest_batch = max(self.largest_batch, size)
        _observe(self.batch_counts, BATCH_BUCKETS, size)

    def append(self, seconds: float) -> None:
        self.appends += 1
        self.append_seconds += seconds
        _observe(self.append_counts, APPEND_BUCKETS, seconds)


def _observe(counts: list[int], bounds: tuple[float, ...], value: float) -> None:
    """Per-bucket (not cumulative) counts; values above the last bound are not kept."""
    for i, bound in enumerate(bounds):
        if value <= bound:
            counts[i] += 1
            return


class ShardCore:
    def __init__(
        self,
        index: int,
        count: int,
        store: EventStore,
        *,
        snapshot_every: int = 100,
        passivate_after_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        on_sync_failure: Callable[[StoreError], None] = stop_the_shard,
    ) -> None:
        self.index, self.count, self.store = index, count, store
        self.on_sync_failure = on_sync_failure
        self.snapshot_every = snapshot_every
        self.passivate_after_s = passivate_after_s
        self.clock = clock
        self.entities: dict[tuple[str, str], Entity] = {}
        self.subs: dict[str, set[str]] = defaultdict(set)
        self.stats = Stats()
        self._works: dict[tuple[str, str], Work] = {}
        self._out = Output()
        self._snapshots: list[tuple[Entity, Snapshot]] = []
        self.timers = TimerLog(store)

    def start(self) -> Output:
        """Activates the timed hunts this shard hosts; finishes those whose time is up."""
        try:
            mine = [
                h
                for h in running_timers(self.store)
                if shard_for(EntityKind.HUNT, h, self.count) == self.index
            ]
        except StoreError as exc:
            log.warning("cannot read running timers: %s", exc)
            return Output()
        return (
            self.handle(None, [Request(0, EntityKind.HUNT, h, None) for h in mine])
            if mine
            else Output()
        )

    # ---- entry points ---------------------------------------------------------

    def handle(self, gateway: str | None, requests: Iterable[Request]) -> Output:
        """Decide and commit at once (``stage`` then ``flush``)."""
        self.stage(gateway, requests)
        return self.flush()

    def stage(self, gateway: str | None, requests: Iterable[Request]) -> None:
        """Decide requests on speculative state; nothing is stored or said until ``flush``.

        A host stages every batch its channels have ready, so one append (one
        fsync) serves them all.
        """
        now_s = self.clock()
        now = int(now_s * 1000)
        count = 0
        for req in requests:
            count += 1
            self._one(gateway, req, self._works, now, now_s, self._out)
        self.stats.batch(count)

    def flush(self) -> Output:
        """Group-commit everything staged, then release its replies and events."""
        works, out = self._works, self._out
        self._works, self._out = {}, Output()
        self._commit(works, out)
        self._save_snapshots()
        self._sync()
        return out

    def _sync(self) -> None:
        """Makes what was committed durable before anyone hears of it (a store that
        ``defers_sync``). If that fails, what was committed is of unknown durability:
        nothing of it may be said, so the shard stops (``on_sync_failure``)."""
        try:
            self.store.sync()
        except StoreError as exc:
            self.on_sync_failure(exc)
            raise

    def tick(self) -> Output:
        """Finishes hunts whose time is up; passivates idle entities."""
        now_s = self.clock()
        due = [
            Request(0, EntityKind.HUNT, e.id, None)
            for e in self.entities.values()
            if isinstance(e, HuntEntity) and _due(e, int(now_s * 1000))
        ]
        out = self.handle(None, due) if due else Output()
        self._passivate(now_s)
        return out

    # ---- one request ----------------------------------------------------------

    def _one(
        self,
        gateway: str | None,
        req: Request,
        works: dict[tuple[str, str], Work],
        now: int,
        now_s: float,
        out: Output,
    ) -> None:
        key = (req.kind, req.entity)
        try:
            work = works.get(key)
            if work is None:
                work = works[key] = self._start_work(key, now)
            work.entity.activity.messages += 1
            work.entity.activity.last_active = now_s
            if isinstance(req.cmd, Subscribe | Unsubscribe):
                self._subscribe(gateway, req, out)
            elif isinstance(work.entity, HuntEntity):
                hunt_work(work, gateway, req, now)
            else:
                player_work(work, gateway, req, now)
        except StoreError as exc:
            log.warning(
                "store error activating %s %s: %s",
                req.kind,
                req.entity,
                exc,
                extra={"entity": f"{req.kind}-{req.entity}", "cmd_id": _cmd_id(req)},
            )
            self.stats.store_errors += 1
            out.reply(gateway, req.req, UNAVAILABLE)
        except Exception:
            log.exception(
                "bug handling %r",
                req,
                extra={"entity": f"{req.kind}-{req.entity}", "cmd_id": _cmd_id(req)},
            )
            out.reply(gateway, req.req, INTERNAL)

    def _start_work(self, key: tuple[str, str], now: int) -> Work:
        entity = self.entities.get(key)
        if entity is None:
            entity = self._load(key)
        work = Work(entity, entity.state)
        if isinstance(entity, HuntEntity) and _due(entity, now):
            hunt_work(work, None, Request(0, EntityKind.HUNT, entity.id, None), now)
        return work

    def _load(self, key: tuple[str, str]) -> Entity:
        kind, entity_id = key
        entity: Entity = (
            load_hunt(self.store, entity_id)
            if kind == EntityKind.HUNT
            else load_player(self.store, entity_id)
        )
        entity.activity.activated_at = entity.activity.last_active = self.clock()
        self.entities[key] = entity
        self.stats.activations += 1
        return entity

    def _subscribe(self, gateway: str | None, req: Request, out: Output) -> None:
        if gateway is None:
            return
        if isinstance(req.cmd, Subscribe):
            self.subs[req.entity].add(gateway)
        else:
            self.subs[req.entity].discard(gateway)
        entity = self.entities.get((EntityKind.HUNT, req.entity))
        seq = entity.version if entity is not None else 0
        out.reply(gateway, req.req, {"t": "ok", "seq": seq})

    # ---- group commit ---------------------------------------------------------

    def _commit(self, works: dict[tuple[str, str], Work], out: Output) -> None:
        requests: list[AppendRequest] = []
        where: list[tuple[Work, int]] = []
        for work in works.values():
            for i, stream in enumerate(work.entity.streams):
                events = work.pending[i]
                if events:
                    version = work.entity.version if i == 0 else work.entity.replies_version  # type: ignore[union-attr]
                    links = work.links if i == 0 else ()
                    requests.append(AppendRequest(stream, version, events, links))
                    where.append((work, i))
        outcomes = self._append(requests)
        for (work, i), outcome in zip(where, outcomes, strict=True):
            work.stored[i] = not isinstance(outcome, StoreError)
        relinked = self._relink(works)
        for work in works.values():
            self._settle(work, out, relinked)

    def _append(self, requests: list[AppendRequest]) -> list[AppendOutcome]:
        if not requests:
            return []
        started = time.perf_counter()
        try:
            outcomes = self.store.append_many(requests)
        except StoreError as exc:
            outcomes = [exc] * len(requests)
        self.stats.append(time.perf_counter() - started)
        for req, outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                self.stats.store_errors += 1
                log.warning(
                    "append to %s failed: %s", req.stream, outcome, extra={"entity": req.stream}
                )
            else:
                self.stats.events_appended += len(req.events)
        return outcomes

    def _relink(self, works: dict[tuple[str, str], Work]) -> bool:
        """Writes again the links of resent commands: the first try may have failed."""
        links = [a.relink for w in works.values() for a in w.answers if a.relink is not None]
        if not links:
            return True
        try:
            self.store.set_links(links)
        except StoreError as exc:
            self.stats.store_errors += 1
            log.warning("links of %d resent commands not stored: %s", len(links), exc)
            return False
        return True

    def _settle(self, work: Work, out: Output, relinked: bool) -> None:
        entity = work.entity
        key = (entity.kind, entity.id)
        before = entity.state
        if all(work.stored.get(i, True) for i in range(len(entity.streams))):
            work.commit()
        else:
            self._reload(key)
        if work.stored.get(0, False) and isinstance(entity, HuntEntity):
            self._publish(entity.id, work, out)
            self._record_timers(before, work.state)
        for answer in work.answers:
            if answer.relink is not None and not relinked:
                out.reply(answer.gateway, answer.req.req, UNAVAILABLE)
            else:
                self._answer(answer, work, out)
        live = self.entities.get(key)
        if live is not None and live.state is None:
            del self.entities[key]  # nothing by that id: keep no empty shell
        elif live is entity:
            self._maybe_snapshot(entity)

    def _answer(self, answer: Answer, work: Work, out: Output) -> None:
        if answer.stream is not None and not work.stored.get(answer.stream, False):
            out.reply(answer.gateway, answer.req.req, UNAVAILABLE)
            return
        if answer.query:
            live = self.entities.get((work.entity.kind, work.entity.id))
            msg = (
                UNAVAILABLE
                if live is None
                else query_reply(live, answer.req, self.store, answer.view_at)
            )
            out.reply(answer.gateway, answer.req.req, msg)
            return
        if answer.hunts_of is not None:
            try:
                hunts = player_hunts(self.store, answer.hunts_of)
            except StoreError as exc:
                log.warning("cannot read the hunts of %s: %s", answer.hunts_of, exc)
                out.reply(answer.gateway, answer.req.req, UNAVAILABLE)
                return
            out.reply(answer.gateway, answer.req.req, {**answer.reply, "hunts": hunts})
            return
        out.reply(answer.gateway, answer.req.req, answer.reply)

    def _reload(self, key: tuple[str, str]) -> None:
        self.entities.pop(key, None)
        try:
            self._load(key)
        except StoreError as exc:
            log.warning("cannot reload %s %s: %s", *key, exc)

    def _publish(self, hunt_id: str, work: Work, out: Output) -> None:
        gateways = self.subs.get(hunt_id, ())
        for seq, frame in work.published:
            for gw in gateways:
                out.events[gw].append((hunt_id, seq, frame))

    def _record_timers(self, before: object, after: object) -> None:
        changes: list[tuple[str, int | None]] = []
        if isinstance(after, HuntState) and after.ends_at is not None:
            was_running = isinstance(before, HuntState) and before.phase == "running"
            if after.phase == "running" and not was_running:
                changes.append((after.hunt_id, after.ends_at))
            elif after.phase == "finished" and was_running:
                changes.append((after.hunt_id, None))
        self.timers.record(changes, int(self.clock() * 1000))

    def _maybe_snapshot(self, entity: Entity, *, force: bool = False) -> None:
        """Queue a snapshot when due; ``_save_snapshots`` writes them together."""
        due = entity.version - entity.snapshot_seq >= self.snapshot_every
        if entity.state is None or entity.version == entity.snapshot_seq or not (due or force):
            return
        self._snapshots.append(
            (entity, Snapshot(entity.streams[0], entity.version, entity.snapshot()))
        )

    def snapshot_now(self, entity: Entity) -> None:
        """Snapshot the entity at once if it has events since its last snapshot."""
        self._maybe_snapshot(entity, force=True)
        self._save_snapshots()
        self._sync()

    def _save_snapshots(self) -> None:
        if not self._snapshots:
            return
        queued, self._snapshots = self._snapshots, []
        try:
            self.store.save_snapshots([snap for _, snap in queued])
        except StoreError as exc:
            log.warning("%d snapshots failed: %s", len(queued), exc)
            return
        for entity, snap in queued:
            entity.snapshot_seq = max(entity.snapshot_seq, snap.seq)

    def _passivate(self, now_s: float) -> None:
        idle = [
            key
            for key, e in self.entities.items()
            if now_s - e.activity.last_active >= self.passivate_after_s and not _pinned(e)
        ]
        for key in idle:
            self._maybe_snapshot(self.entities.pop(key), force=True)
            self.stats.passivations += 1
        self._save_snapshots()


def _cmd_id(req: Request) -> str | None:
    cid = getattr(req.cmd, "id", None)
    return cid if isinstance(cid, str) else None


def _due(entity: HuntEntity, now: int) -> bool:
    s = entity.state
    return s is not None and s.phase == "running" and s.ends_at is not None and now >= s.ends_at


def _pinned(entity: Entity) -> bool:
    """A running hunt with a time limit stays active so its timer fires."""
    s = entity.state
    return isinstance(s, HuntState) and s.phase == "running" and s.ends_at is not None
