"""The Thespian actors: a Director that supervises ShardHosts, which host entities.

The Director creates the shards, recreates one that exits, tells shards and
gateways where every shard lives, and answers placement and inspection
queries. A ShardHost wraps a ``ShardCore`` and moves its batches in and out.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from dataclasses import replace
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorExitRequest,
    ChildActorExited,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from actors.messages import (
    AdminAction,
    AdminReply,
    CommandBatch,
    Inspect,
    RegisterGateway,
    ReplyBatch,
    ShardDirectory,
    ShardsChanged,
    ShardSettings,
    ShardStarted,
    Stopping,
    StoppingAcknowledged,
)
from actors.runtime import _thespian  # noqa: F401  (patches Thespian on import)
from actors.runtime.channel import ChannelServer, Endpoint
from actors.runtime.tuning import tune_gc
from actors.shard import admin
from actors.shard.core import Output, ShardCore
from actors.shard.inspection import inspect_shard, rss_kb
from persistence.factory import open_store

log = logging.getLogger("treasure.actors")


def _ignore_group_signals() -> None:
    """Ctrl-C or a TERM sent to the whole group must not kill actors mid-shutdown:
    the server's main process stops them in order, by message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ShardHost(Actor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        _ignore_group_signals()
        self.core: ShardCore | None = None
        self.settings: ShardSettings | None = None
        self.gateways: dict[str, Any] = {}
        self.channel: ChannelServer | None = None
        self.started = time.monotonic()
        self.samples: deque[tuple[float, int]] = deque(maxlen=21)  # ~5 s of ticks

    def receiveMessage(self, msg: Any, sender: Any) -> ThespianWatch | None:
        self._receive(msg, sender)
        # Thespian watches the returned sockets until the next message (each must return them).
        return ThespianWatch(self.channel.filenos()) if self.channel is not None else None

    def _receive(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, WatchMessage) and self.channel is not None:
            # Group commit without a timer: all that is ready now, in one append;
            # what arrives meanwhile waits in the sockets for the next.
            staged = False
            for gateway, batch in self.channel.ready(msg.ready):
                if isinstance(batch, CommandBatch):
                    self._core().stage(gateway, batch.requests)
                    staged = True
            if staged:
                self._emit(self._core().flush())
        elif isinstance(msg, WakeupMessage):
            if self.core is not None and self.settings is not None:
                self._emit(self.core.tick())
                self.samples.append((time.monotonic(), self.core.stats.messages))
                self.wakeupAfter(timedelta(seconds=self.settings.tick_s))
        elif isinstance(msg, ShardSettings):
            self._start(msg)
            assert self.channel is not None
            self.send(sender, ShardStarted(msg.index, os.getpid(), self.channel.endpoint))
        elif isinstance(msg, RegisterGateway):
            self.gateways[msg.gateway] = msg.address
        elif isinstance(msg, Inspect):
            self.send(sender, replace(self._inspect(msg), ref=msg.ref))
        elif isinstance(msg, AdminAction):
            self.send(sender, replace(self._act(msg), ref=msg.ref))
        elif isinstance(msg, ActorExitRequest):
            if self.channel is not None:
                self.channel.close()
                self.channel = None
            if self.core is not None:
                self.core.store.close()

    def _start(self, settings: ShardSettings) -> None:
        self.settings = settings
        self.channel = ChannelServer(os.environ.get("THESPIAN_BASE_IPADDR", "127.0.0.1"))
        store = open_store(replace(settings.store, defer_sync=True))  # ShardCore syncs
        self.core = ShardCore(
            settings.index,
            settings.count,
            store,
            snapshot_every=settings.snapshot_every,
            passivate_after_s=settings.passivate_after_s,
        )
        self.wakeupAfter(timedelta(seconds=settings.tick_s))
        self._emit(self.core.start())
        tune_gc()  # fewer, cheaper collections: entities are long-lived objects

    def _core(self) -> ShardCore:
        if self.core is None:
            raise RuntimeError("shard used before its settings arrived")
        return self.core

    def _emit(self, out: Output) -> None:
        """One batch per gateway per flush, on its channel (through Thespian if it has none:
        what a lost stream misses, the gateway asks for again when it reconnects)."""
        for gw in out.replies.keys() | out.events.keys():
            batch = ReplyBatch(out.replies.get(gw, []), out.events.get(gw, []))
            sent = self.channel is not None and self.channel.send(gw, batch)
            if not sent and gw in self.gateways:
                self.send(self.gateways[gw], batch)

    def _inspect(self, msg: Inspect) -> AdminReply:
        try:
            return AdminReply(True, inspect_shard(self._core(), msg, self._host_facts()))
        except Exception as exc:
            log.exception("inspection %s failed", msg.what)
            return AdminReply(False, None, f"{type(exc).__name__}: {exc}")

    def _act(self, msg: AdminAction) -> AdminReply:
        try:
            core = self._core()
            if msg.action == "passivate":
                return AdminReply(True, admin.passivate(core, msg.kind, msg.entity))
            if msg.action == "snapshot":
                return AdminReply(True, admin.snapshot(core, msg.kind, msg.entity))
            reply, out = admin.end_hunt(core, msg.entity)
            self._emit(out)
            return AdminReply(True, reply)
        except Exception as exc:
            log.exception("admin action %s failed", msg.action)
            return AdminReply(False, None, f"{type(exc).__name__}: {exc}")

    def _host_facts(self) -> dict[str, Any]:
        rate = 0.0
        if len(self.samples) >= 2:
            (t0, m0), (t1, m1) = self.samples[0], self.samples[-1]
            rate = (m1 - m0) / (t1 - t0) if t1 > t0 else 0.0
        return {
            "msgs_per_s": round(rate, 1),
            "uptime_s": round(time.monotonic() - self.started),
            "backlog_bytes": self.channel.backlog() if self.channel is not None else 0,
        }


class Director(Actor):  # type: ignore[misc]
    """Supervisor: one per actor system, created with ``globalName="director"``."""

    def __init__(self) -> None:
        super().__init__()
        _ignore_group_signals()
        self.template: ShardSettings | None = None
        self.shards: list[Any] = []
        self.pids: list[int] = []
        self.channels: list[Endpoint | None] = []
        self.gateways: dict[str, Any] = {}
        self.restarts = 0
        self.requester: Any = None
        self.stopping = False

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ShardSettings):
            self.template, self.requester = msg, sender
            self.shards = [self._spawn(i) for i in range(msg.count)]
        elif isinstance(msg, RegisterGateway):
            self.gateways[msg.gateway] = msg.address
            for shard in self.shards:
                self.send(shard, msg)
            self.send(sender, self._directory())
        elif isinstance(msg, ChildActorExited) and not self.stopping:
            self._replace(msg.childAddress)
        elif isinstance(msg, Stopping | ActorExitRequest):
            self.stopping = True
            if isinstance(msg, Stopping):
                self.send(sender, StoppingAcknowledged())
        elif isinstance(msg, ShardStarted):
            self._started(msg.index, msg.pid, msg.channel)
        elif isinstance(msg, Inspect):
            self.send(sender, replace(self._inspect(msg), ref=msg.ref))

    def _spawn(self, index: int) -> Any:
        assert self.template is not None
        shard = self.createActor(ShardHost)
        settings = replace(self.template, index=index)
        self.send(shard, settings)
        for name, address in self.gateways.items():
            self.send(shard, RegisterGateway(name, address))
        while len(self.pids) <= index:
            self.pids.append(0)
            self.channels.append(None)
        self.pids[index] = 0
        self.channels[index] = None
        return shard

    def _directory(self) -> ShardDirectory:
        return ShardDirectory(list(self.shards), list(self.channels))

    def _started(self, index: int, pid: int, channel: Endpoint | None) -> None:
        self.pids[index] = pid
        self.channels[index] = channel
        if 0 in self.pids:
            return
        if self.requester is not None:
            self.send(self.requester, self._directory())
            self.requester = None
        self._announce()

    def _replace(self, dead: Any) -> None:
        for index, shard in enumerate(self.shards):
            if shard == dead:
                log.warning("shard %d exited; recreating it", index)
                self.restarts += 1
                self.shards[index] = self._spawn(index)
                return

    def _announce(self) -> None:
        for address in self.gateways.values():
            self.send(address, ShardsChanged(list(self.shards), list(self.channels)))

    def _inspect(self, msg: Inspect) -> AdminReply:
        if msg.what == "director":
            data = {
                "pid": os.getpid(),
                "memory_kb": _memory_kb(),
                "shards": len(self.shards),
                "shard_pids": list(self.pids),
                "restarts": self.restarts,
                "gateways": sorted(self.gateways),
            }
            return AdminReply(True, data)
        if msg.what == "shards":
            return AdminReply(True, list(self.shards))
        return AdminReply(False, None, f"the director does not answer {msg.what!r}")


def _memory_kb() -> int:
    return rss_kb()
