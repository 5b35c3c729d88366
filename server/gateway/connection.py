"""One client connection: its state, its bounded outgoing queue, its rate limit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from enum import Enum
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

log = logging.getLogger("treasure.gateway")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
# Above this many bytes waiting in the socket's buffer, frames wait for it to drain.
WRITE_HIGH_WATER = 64 * 1024


class ConnState(Enum):
    AWAITING_HELLO = "awaiting_hello"
    HELLO_PENDING = "hello_pending"
    READY = "ready"
    CLOSED = "closed"


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.stamp = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Flusher:
    """The connections that queued frames this loop turn; one callback writes them all.

    A callback per connection and turn (a reply and its event are two frames)
    cost the gateway a handle and a loop step per command.
    """

    def __init__(self) -> None:
        self._due: list[Connection] = []

    def add(self, conn: Connection) -> None:
        if not self._due:
            asyncio.get_running_loop().call_soon(self._flush)
        self._due.append(conn)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for conn in due:
            try:
                conn._flush()
            except Exception:  # one connection's failure must not keep the others' frames
                log.exception("writing to %s failed", conn.remote)


class Connection:
    def __init__(
        self, ws: ServerConnection, limit: int, bucket: TokenBucket, flusher: Flusher
    ) -> None:
        self.ws = ws
        self._flusher = flusher
        self.state = ConnState.AWAITING_HELLO
        self.player_id = ""
        self.name = ""
        self.bucket = bucket
        self.bad_frames = 0
        self.too_slow = False
        self._limit = limit
        self._out: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._flush_due = False
        self.feeds: dict[str, Any] = {}
        self.restored: set[str] = set()  # hunts restored at hello, held until resumed

    @property
    def remote(self) -> str:
        addr = self.ws.remote_address
        return str(addr[0]) if addr else "?"

    def send(self, frame: bytes) -> None:
        """Queues a frame; what queued up in one loop turn goes out in one write."""
        if self.state is ConnState.CLOSED:
            return
        if len(self._out) >= self._limit:
            self.too_slow = True
            self.close(CLOSE_POLICY, "too slow: outgoing queue full")
            return
        self._out.append(frame)
        if not self._flush_due and self._writer is None:
            self._flush_due = True
            self._flusher.add(self)

    def _flush(self) -> None:
        """The common case without a task or a write per frame: frames made by the
        websockets protocol, written at once. When the socket's buffer is full (or the
        connection is closing) a task sends through ``ws.send``, which waits for it."""
        self._flush_due = False
        if self.state is ConnState.CLOSED or self._writer is not None or not self._out:
            return
        ws, transport = self.ws, self.ws.transport
        if (
            ws.protocol.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() > WRITE_HIGH_WATER
        ):
            self._writer = asyncio.get_running_loop().create_task(self._drain())
            return
        for frame in self._out:
            ws.protocol.send_binary(frame)
        self._out.clear()
        transport.write(b"".join(ws.protocol.data_to_send()))

    async def _drain(self) -> None:
        try:
            while self._out and self.state is not ConnState.CLOSED:
                await self.ws.send(self._out.popleft())
        except ConnectionClosed:
            self.state = ConnState.CLOSED
        finally:
            self._writer = None

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Closes with ``code``; with ``flush`` the frames already queued go out first."""
        if self.state is ConnState.CLOSED:
            return
        log.info("closing %s (player %s): %d %s", self.remote, self.player_id or "-", code, reason)
        self.state = ConnState.CLOSED
        pending = list(self._out) if flush else []
        self._out.clear()
        asyncio.get_running_loop().create_task(self._close(code, reason, pending))

    async def _close(self, code: int, reason: str, pending: list[bytes]) -> None:
        try:
            for frame in pending:
                await self.ws.send(frame)
        except ConnectionClosed:
            return
        await self.ws.close(code, reason)
