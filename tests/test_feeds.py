"""The gateway's per-connection feeds (``server.feeds.Hub``) without a server."""

from __future__ import annotations

import asyncio
from typing import Any

from server.connection import Connection
from server.feeds import Hub


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
