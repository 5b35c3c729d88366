"""The bridge between the asyncio gateway and the Thespian shards.

One sender thread per shard and one listener, each with its own private
actor-system context (contexts are not safe to share). A Thespian ``tell``
returns only once the shard has acknowledged the message, which it does
between two of its messages, so a shard busy committing would hold up the
requests to every other shard if one thread sent to all. The loop collects
requests for one turn and hands each shard's sender one batch; what queues
up while a send waits goes in the next one. Replies and events come back
through ``call_soon_threadsafe``. When a shard is recreated, the requests in
flight to it are sent again with the same ids (entities make that safe).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from actors.messages import (
    CommandBatch,
    RegisterGateway,
    ReplyBatch,
    Request,
    ShardDirectory,
    ShardsChanged,
    Subscribe,
)
from actors.placement import shard_for

log = logging.getLogger("treasure.bridge")
EventSink = Callable[[list[tuple[str, int, bytes]]], None]


class Bridge:
    def __init__(self, asys: Any, director: Any, shards: list[Any], gateway_id: str) -> None:
        self.asys, self.director, self.shards = asys, director, list(shards)
        self.gateway_id = gateway_id
        self.on_events: EventSink = lambda events: None
        self.on_shards_changed: Callable[[list[int]], None] = lambda replaced: None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[dict[str, Any]], int, Request]] = {}
        self._outbox: dict[int, list[Request]] = defaultdict(list)
        self._flush_scheduled = False
        self._sendqs: list[queue.SimpleQueue[list[Request] | None]] = [
            queue.SimpleQueue() for _ in self.shards
        ]
        self._running = False
        self._threads: list[threading.Thread] = []
        self._address: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.batches_sent = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def count(self) -> int:
        return len(self.shards)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self._running = loop, True
        ready = threading.Event()
        listener = threading.Thread(target=self._listen, args=(ready,), name="bridge-listen")
        listener.start()
        ready.wait(30)
        senders = [
            threading.Thread(target=self._send, args=(i,), name=f"bridge-send-{i}")
            for i in range(self.count)
        ]
        for t in senders:
            t.start()
        self._threads = [listener, *senders]

    def stop(self) -> None:
        self._running = False
        for q in self._sendqs:
            q.put(None)
        for t in self._threads:
            t.join(10)

    def in_flight(self) -> int:
        return len(self._pending)

    # ---- loop side ------------------------------------------------------------

    def submit(
        self, kind: str, entity: str, cmd: Any, player: str = "", name: str = ""
    ) -> asyncio.Future[dict[str, Any]]:
        assert self.loop is not None
        req = Request(next(self._ids), kind, entity, cmd, player, name)
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        index = shard_for(kind, entity, self.count)
        self._pending[req.req] = (fut, index, req)
        self.idle.clear()
        fut.add_done_callback(lambda _: self._forget(req.req))
        self._queue(index, req)
        return fut

    def _forget(self, req: int) -> None:
        self._pending.pop(req, None)
        if not self._pending:
            self.idle.set()

    def subscribe(self, hunt: str) -> asyncio.Future[dict[str, Any]]:
        return self.submit("hunt", hunt, Subscribe())

    def _queue(self, index: int, req: Request) -> None:
        self._outbox[index].append(req)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, defaultdict(list)
        for index, requests in outbox.items():
            self._sendqs[index].put(requests)

    def _on_batch(self, batch: ReplyBatch) -> None:
        self._on_replies(batch.replies)
        if batch.events:  # after the replies' callbacks, which set_result scheduled first
            assert self.loop is not None
            self.loop.call_soon(self.on_events, batch.events)

    def _on_replies(self, replies: list[tuple[int, dict[str, Any]]]) -> None:
        for req, msg in replies:
            entry = self._pending.get(req)
            if entry is not None and not entry[0].done():
                entry[0].set_result(msg)

    def _on_shards_changed(self, msg: ShardsChanged) -> None:
        self.shards = list(msg.shards)
        for req_id, (fut, index, req) in list(self._pending.items()):
            if index in msg.replaced and not fut.done():
                log.warning("resending request %d to recreated shard %d", req_id, index)
                self._queue(index, req)
        self.on_shards_changed(msg.replaced)

    # ---- threads ----------------------------------------------------------------

    def _send(self, index: int) -> None:
        sendq = self._sendqs[index]
        with self.asys.private() as ctx:
            while True:
                requests = sendq.get()
                if requests is None:
                    return
                while True:  # coalesce whatever queued up while the last send waited
                    try:
                        more = sendq.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        sendq.put(None)
                        break
                    requests = requests + more
                self._tell(ctx, index, requests)

    def _tell(self, ctx: Any, index: int, requests: list[Request]) -> None:
        try:
            ctx.tell(self.shards[index], CommandBatch(self.gateway_id, self._address, requests))
            self.batches_sent += 1
        except Exception as exc:  # the shard may be gone; its requests are resent on restart
            log.warning("sending %d requests to shard %d failed: %s", len(requests), index, exc)

    def _listen(self, ready: threading.Event) -> None:
        with self.asys.private() as ctx:
            self._address = ctx._systemBase.transport.myAddress
            reply = ctx.ask(self.director, RegisterGateway(self.gateway_id, self._address), 30)
            if isinstance(reply, ShardDirectory):
                self.shards = list(reply.shards)
            ready.set()
            assert self.loop is not None
            while self._running:
                msg = ctx.listen(0.2)
                if isinstance(msg, ReplyBatch):
                    self.loop.call_soon_threadsafe(self._on_batch, msg)
                elif isinstance(msg, ShardsChanged):
                    self.loop.call_soon_threadsafe(self._on_shards_changed, msg)
