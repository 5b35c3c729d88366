"""Which connections get which hunt's events, in order.

Per connection and hunt a ``Feed`` remembers the last seq delivered. An event
at exactly the next seq goes out; an older one is a duplicate and is dropped;
a newer one means a gap, so live events are held while the missing ones are
fetched from the hunt, then delivered in order. The same holding happens
while a ``resume`` is in flight.

The gateway follows a hunt (its shard sends it the hunt's events) while any
of its connections does, and ``LINGER_S`` longer: a player who leaves and
joins again, or reconnects, costs no unsubscribe and subscribe round trip to
the shard (under churn those would be a large share of the shards' requests).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.messages import Resumed, ShardReply
from server.gateway.connection import Connection, ConnState
from server.gateway.deadlines import Deadlines

log = logging.getLogger("treasure.feeds")
LINGER_S = 10.0
Fetch = Callable[[Connection, str, int], "asyncio.Future[ShardReply]"]


@dataclass
class Feed:
    last: int | None = None
    held: list[tuple[int, bytes]] | None = None
    repairs: int = field(default=0)


class Hub:
    def __init__(
        self,
        fetch: Fetch,
        subscribe_hunt: Callable[[str], None],
        unsubscribe_hunt: Callable[[str], None] = lambda hunt: None,
        linger_s: float = LINGER_S,
    ) -> None:
        self.subscribers: dict[str, set[Connection]] = defaultdict(set)
        self._fetch = fetch
        self._subscribe_hunt = subscribe_hunt
        self._idle = Deadlines[str](linger_s, unsubscribe_hunt)  # followed by none of ours
        self.gaps_repaired = 0

    def hunts(self) -> list[str]:
        return [h for h, conns in self.subscribers.items() if conns]

    def subscribe(self, conn: Connection, hunt: str, last: int | None) -> Feed:
        feed = conn.feeds.get(hunt)
        if feed is None:
            feed = conn.feeds[hunt] = Feed(last)
        elif last is not None and feed.last is None:
            feed.last = last
        # A feed that already delivers keeps its place: the events up to ``last`` (a
        # re-join's reply seq, say) may still be on their way to it, and moving ``last``
        # past them would drop them as duplicates, leaving the client a gap.
        if not self.subscribers[hunt] and not self._idle.discard(hunt):
            self._subscribe_hunt(hunt)
        self.subscribers[hunt].add(conn)
        return feed

    def unsubscribe(self, conn: Connection, hunt: str) -> None:
        conn.feeds.pop(hunt, None)
        conns = self.subscribers.get(hunt)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.subscribers[hunt]
                self._idle.add(hunt)

    def lingering(self) -> list[str]:
        """Hunts the gateway still follows though none of its connections does."""
        return list(self._idle)

    def forget(self, hunts: list[str]) -> None:
        """Stop counting lingering ``hunts`` as followed (their shard was replaced and
        follows nothing for this gateway); a connection that follows one subscribes."""
        for hunt in hunts:
            self._idle.discard(hunt)

    def drop(self, conn: Connection) -> None:
        for hunt in list(conn.feeds):
            self.unsubscribe(conn, hunt)

    def publish(self, events: list[tuple[str, int, bytes]]) -> None:
        for hunt, seq, frame in events:
            for conn in tuple(self.subscribers.get(hunt, ())):
                feed = conn.feeds.get(hunt)
                if feed is not None:
                    self.offer(conn, hunt, feed, seq, frame)

    def offer(self, conn: Connection, hunt: str, feed: Feed, seq: int, frame: bytes) -> None:
        if feed.held is not None:
            feed.held.append((seq, frame))
        elif feed.last is None or seq == feed.last + 1:
            feed.last = seq
            conn.send(frame)
        elif seq > feed.last + 1:
            feed.held = [(seq, frame)]
            self._repair(conn, hunt, feed)

    def hold(self, feed: Feed) -> None:
        if feed.held is None:
            feed.held = []

    def release(
        self, conn: Connection, hunt: str, feed: Feed, frames: list[bytes], seq: int
    ) -> None:
        """Deliver fetched frames (up to ``seq``), then what was held meanwhile."""
        for frame in frames:
            conn.send(frame)
        feed.last = max(seq, feed.last or 0)
        held, feed.held = feed.held or [], None
        for s, frame in sorted(held, key=lambda x: x[0]):
            if s > feed.last:
                self.offer(conn, hunt, feed, s, frame)

    def unhold(self, conn: Connection, hunt: str, feed: Feed) -> None:
        """Release what a restored feed held when no resume came for it."""
        if conn.feeds.get(hunt) is not feed or feed.held is None:
            return
        held, feed.held = feed.held, None
        for s, frame in sorted(held, key=lambda x: x[0]):
            if feed.last is None or s > feed.last:
                self.offer(conn, hunt, feed, s, frame)

    def catch_up(self, hunt: str, seq: int) -> None:
        """Fetch what each feed of ``hunt`` misses up to ``seq`` (a recreated shard's)."""
        for conn in tuple(self.subscribers.get(hunt, ())):
            feed = conn.feeds.get(hunt)
            if feed is not None and feed.held is None and feed.last is not None and feed.last < seq:
                feed.held = []
                self._repair(conn, hunt, feed)

    def _repair(self, conn: Connection, hunt: str, feed: Feed) -> None:
        after = feed.last or 0
        fut = self._fetch(conn, hunt, after)

        def done(f: asyncio.Future[ShardReply]) -> None:
            if conn.state is ConnState.CLOSED or conn.feeds.get(hunt) is not feed:
                return
            msg = f.result() if not f.cancelled() and f.exception() is None else None
            if not isinstance(msg, Resumed):
                log.warning("gap repair of %s after %d failed: %s", hunt, after, msg)
                feed.held = None  # deliver from the next event on
                return
            self.gaps_repaired += 1
            # What a resume delivered meanwhile is not delivered again.
            since = max(0, (feed.last or 0) - after)
            self.release(conn, hunt, feed, msg.frames[since : max(0, msg.seq - after)], msg.seq)

        fut.add_done_callback(done)
