"""The gateway's per-connection feeds (``server.gateway.feeds.Hub``) without a server."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.messages import Resumed, ShardReply
from server.gateway.connection import Connection, ConnState
from server.gateway.feeds import Hub


class FakeConn:
    def __init__(self) -> None:
        self.feeds: dict[str, Any] = {}
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)


def never_fetch(conn: Connection, hunt: str, after: int) -> asyncio.Future[dict[str, Any]]:
    raise AssertionError(f"no gap expected, fetch after {after}")


def test_subscribing_a_delivering_feed_again_keeps_its_place() -> None:
    """A re-join's reply (seq 5) can overtake events 3..5 on their way to the
    connection; they must still be delivered, not dropped as duplicates."""
    hub = Hub(never_fetch, lambda hunt: None)
    conn: Any = FakeConn()
    hub.subscribe(conn, "h", 2)
    hub.subscribe(conn, "h", 5)  # the re-join
    hub.publish([("h", s, f"e{s}".encode()) for s in (3, 4, 5, 6)])
    assert conn.sent == [b"e3", b"e4", b"e5", b"e6"]


async def test_the_gateway_follows_a_hunt_a_while_after_its_last_follower_left() -> None:
    calls: list[str] = []
    unsubscribed = asyncio.Event()

    def unsubscribe(hunt: str) -> None:
        calls.append(f"-{hunt}")
        unsubscribed.set()

    hub = Hub(never_fetch, lambda hunt: calls.append(f"+{hunt}"), unsubscribe, linger_s=0.05)
    a: Any = FakeConn()
    b: Any = FakeConn()
    hub.subscribe(a, "h", 0)
    hub.unsubscribe(a, "h")
    assert calls == ["+h"] and hub.lingering() == ["h"]
    hub.subscribe(b, "h", 0)  # back within the linger: no round trip to the shard
    assert calls == ["+h"] and hub.lingering() == []
    hub.publish([("h", 1, b"e1")])
    assert b.sent == [b"e1"] and a.sent == []
    hub.unsubscribe(b, "h")
    await asyncio.wait_for(unsubscribed.wait(), 10)
    assert calls == ["+h", "-h"] and hub.lingering() == []
    hub.subscribe(a, "h", 1)
    assert calls == ["+h", "-h", "+h"]


async def test_a_forgotten_lingering_hunt_is_subscribed_again() -> None:
    """Its shard was replaced and follows nothing for this gateway any more."""
    calls: list[str] = []
    hub = Hub(never_fetch, calls.append, lambda hunt: None, linger_s=60)
    conn: Any = FakeConn()
    hub.subscribe(conn, "h", 0)
    hub.unsubscribe(conn, "h")
    hub.forget(["h", "other"])
    assert hub.lingering() == []
    hub.subscribe(conn, "h", 0)
    assert calls == ["h", "h"]


async def test_a_repair_answered_after_a_resume_delivers_nothing_twice() -> None:
    """A gap's fetch is in flight when a ``resume`` on the same connection delivers
    the same events; the fetch's late answer must not deliver them again."""
    loop = asyncio.get_running_loop()
    fetches: list[asyncio.Future[ShardReply]] = []

    def fetch(conn: Connection, hunt: str, after: int) -> asyncio.Future[ShardReply]:
        fetches.append(loop.create_future())
        return fetches[-1]

    hub = Hub(fetch, lambda hunt: None)
    conn: Any = FakeConn()
    conn.state = ConnState.READY
    feed = hub.subscribe(conn, "h", 1)
    hub.publish([("h", 3, b"e3")])  # 2 is missing: held, fetched
    assert conn.sent == [] and len(fetches) == 1
    hub.release(conn, "h", feed, [b"e2", b"e3"], 3)  # a resume from 1 answered first
    assert conn.sent == [b"e2", b"e3"]
    answered = asyncio.Event()
    fetches[0].add_done_callback(lambda f: answered.set())  # runs after the hub's callback
    fetches[0].set_result(Resumed(3, [b"e2", b"e3"]))
    await answered.wait()
    hub.publish([("h", 4, b"e4")])
    assert conn.sent == [b"e2", b"e3", b"e4"]
