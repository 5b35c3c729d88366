"""The bridge between the asyncio gateway and the Thespian shards.

Commands go to each shard, and replies and events come back, on the shard's
data channel (``actors/runtime/channel.py``): one TCP stream per shard, written and
read by the event loop itself. The loop collects requests for one turn and
writes each shard one batch; while a shard has not answered the batch before,
the next ones are held and go as one when its reply batch comes (or after
``HOLD_MAX_S``): the shard could not have read them sooner, as it reads
between commits, and fewer, larger batches cost less per command on both
sides (docs/performance.md).

Control messages (the shard directory, shards recreated) still come through
Thespian, to one listener thread with its own private actor-system context;
it also takes reply batches a shard had to send through Thespian because it
had no stream to this gateway.

Every request stays pending until answered, or until its deadline: a
request sent with ``send`` is answered by calling its ``then`` in the turn
its reply batch is read, with no future, timer or scheduled callback per
command (those were a large share of the gateway's CPU); one timer, for the oldest
deadline (``Deadlines``), answers the late ones "timed out". When a stream comes up (the
first time, after it was lost, or to a recreated shard), the requests
pending for that shard are written to it again with the same ids (entities
make that safe), and the gateway resubscribes the hunts that shard hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import pickle
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from actors.game.ids import EntityKind
from actors.messages import (
    CommandBatch,
    RegisterGateway,
    ReplyBatch,
    Request,
    ShardDirectory,
    ShardReply,
    ShardsChanged,
    Subscribe,
    WireReply,
)
from actors.placement import shard_for
from actors.runtime.channel import Endpoint, FrameReader, frame, hello
from protocol.errors import ErrorCode
from server.gateway.deadlines import Deadlines

log = logging.getLogger("treasure.bridge")
EventSink = Callable[[list[tuple[str, int, bytes]]], None]
TIMED_OUT: WireReply = {"t": "error", "code": ErrorCode.UNAVAILABLE, "message": "timed out"}
REQUEST_TIMEOUT_S = 10.0
RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 1.0
HOLD_MAX_S = 0.02  # the longest a batch waits for the reply to the one before it


class ShardLink(asyncio.Protocol):
    """The gateway's end of one shard's data channel."""

    def __init__(self, bridge: Bridge, index: int, endpoint: Endpoint) -> None:
        self.bridge, self.index, self.endpoint = bridge, index, endpoint
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader()
        self.lost = False
        self.awaiting = False  # a batch was written and no reply batch has come since
        self.held: list[Request] = []
        self._hold_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(hello(self.endpoint.token, self.bridge.gateway_id))

    def send(self, requests: list[Request]) -> None:
        """Writes the requests as one batch, or holds them while the shard has not
        answered the batch before: they go together when its reply batch comes."""
        if not self.awaiting:
            self._write(requests)
            return
        self.held += requests
        if self._hold_timer is None:
            self._hold_timer = asyncio.get_running_loop().call_later(HOLD_MAX_S, self._release)

    def _write(self, requests: list[Request]) -> None:
        assert self.transport is not None
        self.transport.write(frame(CommandBatch(requests)))
        self.awaiting = True
        self.bridge.batches_sent += 1

    def _release(self) -> None:
        self._stop_hold_timer()
        self.awaiting = False
        if self.held and not self.lost:
            held, self.held = self.held, []
            self._write(held)

    def _stop_hold_timer(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.reader.feed(data)
        except Exception as exc:
            log.error("shard %d broke its channel's framing: %s", self.index, exc)
            self.close()
            return
        batches = [msg for msg in map(pickle.loads, payloads) if isinstance(msg, ReplyBatch)]
        if batches:
            self._release()  # first, so the shard works on them while these are answered
        for batch in batches:
            self.bridge._on_batch(batch)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._stop_hold_timer()
        self.held = []  # still pending in the bridge: resent on the next link
        self.bridge._link_lost(self, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Bridge:
    def __init__(
        self,
        asys: Any,
        director: Any,
        shards: list[Any],
        gateway_id: str,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.asys, self.director, self.shards = asys, director, list(shards)
        self.gateway_id = gateway_id
        self.on_events: EventSink = lambda events: None
        self.on_shards_changed: Callable[[list[int]], None] = lambda replaced: None
        self.channels: list[Endpoint | None] = [None] * len(self.shards)
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Callable[[ShardReply], None], int, Request]] = {}
        self.deadlines = Deadlines[int](timeout_s, self._timed_out)  # of ``send``'s requests
        self._outbox: dict[int, list[Request]] = defaultdict(list)
        self._flush_scheduled = False
        self._links: dict[int, ShardLink] = {}
        self._connecting: dict[int, asyncio.Task[None]] = {}
        self._ever_linked: set[int] = set()
        self._running = False
        self._listener: threading.Thread | None = None
        self._address: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.batches_sent = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def count(self) -> int:
        return len(self.shards)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Registers with the Director, then opens every shard's channel (from ``loop``)."""
        self.loop, self._running = loop, True
        ready = threading.Event()
        self._listener = threading.Thread(target=self._listen, args=(ready,), name="bridge-listen")
        self._listener.start()
        ready.wait(30)
        for index in range(self.count):
            self._connect(index)

    def stop(self) -> None:
        """Closes the channels and stops the listener; safe from any thread."""
        self._running = False
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                self.loop.call_soon_threadsafe(self._close_links)
        if self._listener is not None:
            self._listener.join(10)

    def in_flight(self) -> int:
        return len(self._pending)

    def linked(self) -> list[int]:
        """The shards whose channel is up."""
        return sorted(self._links)

    # ---- loop side ------------------------------------------------------------

    def send(
        self,
        kind: EntityKind,
        entity: str,
        cmd: Any,
        then: Callable[[ShardReply], None],
        player: str = "",
        name: str = "",
    ) -> None:
        """Sends a request; ``then`` gets its reply, or ``TIMED_OUT`` after the bridge's
        ``timeout_s``."""
        self.deadlines.add(self._track(kind, entity, cmd, then, player, name).req)

    def submit(
        self, kind: EntityKind, entity: str, cmd: Any, player: str = "", name: str = ""
    ) -> asyncio.Future[ShardReply]:
        """Sends a request; its future gets the reply (cancel it to stop waiting)."""
        assert self.loop is not None
        fut: asyncio.Future[ShardReply] = self.loop.create_future()

        def settle(msg: ShardReply) -> None:
            if not fut.done():
                fut.set_result(msg)

        req = self._track(kind, entity, cmd, settle, player, name)
        fut.add_done_callback(lambda _: self._forget(req.req))
        return fut

    def _track(
        self,
        kind: EntityKind,
        entity: str,
        cmd: Any,
        then: Callable[[ShardReply], None],
        player: str,
        name: str,
    ) -> Request:
        req = Request(next(self._ids), kind, entity, cmd, player, name)
        index = shard_for(kind, entity, self.count)
        self._pending[req.req] = (then, index, req)
        self.idle.clear()
        self._queue(index, req)
        return req

    def _forget(self, req: int) -> None:
        self._pending.pop(req, None)
        self.deadlines.discard(req)
        if not self._pending:
            self.idle.set()

    def _timed_out(self, req: int) -> None:
        entry = self._pending.get(req)
        self._forget(req)
        if entry is not None:
            self._answer(entry[0], dict(TIMED_OUT))

    def subscribe(self, hunt: str) -> asyncio.Future[ShardReply]:
        return self.submit(EntityKind.HUNT, hunt, Subscribe())

    def _queue(self, index: int, req: Request) -> None:
        self._outbox[index].append(req)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """One batch per shard; a shard without a channel gets its requests when it has one."""
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, defaultdict(list)
        for index, requests in outbox.items():
            link = self._links.get(index)
            if link is not None:
                link.send(requests)

    def _on_batch(self, batch: ReplyBatch) -> None:
        self._on_replies(batch.replies)
        if batch.events:  # after the replies: a join's reply comes before its event
            try:
                self.on_events(batch.events)
            except Exception:  # the stream and the other batches go on
                log.exception("delivering %d events failed", len(batch.events))

    def _on_replies(self, replies: list[tuple[int, ShardReply]]) -> None:
        for req, msg in replies:
            entry = self._pending.get(req)
            if entry is not None:
                self._forget(req)
                self._answer(entry[0], msg)

    @staticmethod
    def _answer(then: Callable[[ShardReply], None], msg: ShardReply) -> None:
        try:
            then(msg)
        except Exception:  # one reply's bug must not lose the others of its batch
            log.exception("handling a reply failed")

    def _on_shards_changed(self, msg: ShardsChanged) -> None:
        self.shards = list(msg.shards)
        for index, endpoint in enumerate(msg.channels):
            if endpoint != self.channels[index]:
                self.channels[index] = endpoint
                link = self._links.pop(index, None)
                if link is not None:
                    link.close()
                self._connect(index)

    # ---- channels -------------------------------------------------------------

    def _connect(self, index: int) -> None:
        assert self.loop is not None
        task = self._connecting.pop(index, None)
        if task is not None:
            task.cancel()
        if self._running and index not in self._links:
            self._connecting[index] = self.loop.create_task(self._connect_until_up(index))

    async def _connect_until_up(self, index: int) -> None:
        """Until the channel is up, or the Director announces another endpoint (a
        recreated shard), which starts a new attempt."""
        assert self.loop is not None
        delay = RECONNECT_FIRST_S
        while self._running:
            endpoint = self.channels[index]
            if endpoint is not None:
                try:
                    make = functools.partial(ShardLink, self, index, endpoint)
                    _, link = await self.loop.create_connection(make, endpoint.host, endpoint.port)
                except OSError as exc:  # said once per outage, not at every retry
                    level = logging.WARNING if delay == RECONNECT_FIRST_S else logging.DEBUG
                    log.log(level, "cannot open the channel of shard %d: %s", index, exc)
                else:
                    if not link.lost:  # it may have closed before this task resumed
                        self._link_up(link)
                        return
            await asyncio.sleep(delay)  # back off: the shard is being recreated
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _link_up(self, link: ShardLink) -> None:
        index = link.index
        self._connecting.pop(index, None)
        self._links[index] = link
        self._outbox.pop(index, None)  # all pending below, in the order they were submitted
        again = [req for _, i, req in self._pending.values() if i == index]
        if again:
            if index in self._ever_linked:
                log.warning("resending %d requests to shard %d", len(again), index)
            link.send(again)
        if index in self._ever_linked:
            # The shard may have stored events it never sent us: resubscribe, catch up.
            self.on_shards_changed([index])
        self._ever_linked.add(index)

    def _link_lost(self, link: ShardLink, exc: Exception | None) -> None:
        if self._links.get(link.index) is not link:
            return  # a link we replaced or that never came up
        del self._links[link.index]
        if self._running:
            log.warning("lost the channel of shard %d: %s", link.index, exc or "closed")
            self._connect(link.index)

    def _close_links(self) -> None:
        for task in self._connecting.values():
            task.cancel()
        self._connecting.clear()
        for link in list(self._links.values()):
            link.close()
        self._links.clear()

    # ---- the listener thread --------------------------------------------------

    def _listen(self, ready: threading.Event) -> None:
        with self.asys.private() as ctx:
            self._address = ctx._systemBase.transport.myAddress
            reply = ctx.ask(self.director, RegisterGateway(self.gateway_id, self._address), 30)
            if isinstance(reply, ShardDirectory):
                self.shards = list(reply.shards)
                self.channels = list(reply.channels) or [None] * len(self.shards)
            ready.set()
            assert self.loop is not None
            while self._running:
                msg = ctx.listen(0.2)
                if isinstance(msg, ReplyBatch):
                    self.loop.call_soon_threadsafe(self._on_batch, msg)
                elif isinstance(msg, ShardsChanged):
                    self.loop.call_soon_threadsafe(self._on_shards_changed, msg)
