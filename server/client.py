"""A game client over a real WebSocket, used by the bots, the tests and examples.

It matches replies to commands by id and checks what the protocol promises:
every command answered exactly once, each hunt's events in seq order with no
gap or duplicate (a ``resume`` restarts the count at its ``after_seq``).
Whatever breaks a promise is counted in ``violations``, never ignored.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class ReplyTimeout(Exception):
    pass


@dataclass
class HuntLog:
    last: int | None = None
    resume_after: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class GameClient:
    def __init__(
        self,
        url: str,
        *,
        name: str = "bot",
        reply_timeout_s: float = 15.0,
        keep_events: bool = True,
    ) -> None:
        self.url = url
        self.name = name
        self.reply_timeout_s = reply_timeout_s
        self.keep_events = keep_events  # False: no event list, no delay list (long bot runs)
        self.ws: ClientConnection | None = None
        self.player_id = ""
        self.token = ""
        self.hunts: dict[str, HuntLog] = defaultdict(HuntLog)
        self.violations: list[str] = []
        self.sent = 0
        self.replies = 0
        self.event_delays_ms: list[float] = []
        self.closed: tuple[int | None, str] | None = None
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3) + "-"
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._answered: set[str] = set()
        self._commands: dict[str, tuple[str, dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._event_signal = asyncio.Event()

    async def connect(self, **kwargs: Any) -> None:
        self.ws = await connect(self.url, max_size=2**22, compression=None, **kwargs)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    # ---- commands ---------------------------------------------------------------

    def next_id(self) -> str:
        # Unique per client: a new client of the same player must not reuse an id,
        # or the server answers it from its idempotency memory.
        return f"{self._prefix}{next(self._ids)}"

    async def send_raw(self, data: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def request(self, t: str, cid: str | None = None, **fields: Any) -> dict[str, Any]:
        cid = cid or self.next_id()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[cid] = fut
        self._commands[cid] = (t, fields)
        if t == "resume":
            log = self.hunts[fields["hunt_id"]]
            log.resume_after = fields["after_seq"]
        self.sent += 1
        try:
            await self.send_raw(msgpack.packb({"t": t, "id": cid, **fields}))
        except BaseException:
            # the socket is gone: nobody will await this future ("never retrieved"),
            # which the reader may already have failed while the send waited
            self._waiting.pop(cid, None)
            self._commands.pop(cid, None)
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()
            raise
        try:
            return await asyncio.wait_for(fut, self.reply_timeout_s)
        except TimeoutError:
            self._waiting.pop(cid, None)
            self._commands.pop(cid, None)
            self.violations.append(f"no reply to {t} {cid} within {self.reply_timeout_s}s")
            raise ReplyTimeout(f"{t} {cid}") from None

    async def hello(self, token: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"protocol": 1}
        fields.update({"token": token} if token else {"name": self.name})
        reply = await self.request("hello", **fields)
        if reply.get("t") == "welcome":
            self.player_id, self.token = reply["player_id"], reply["token"]
        return reply

    # ---- frames in --------------------------------------------------------------

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.closed = (rcvd.code, rcvd.reason) if rcvd else (None, "")
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"closed: {self.closed}"))

    def _on_frame(self, frame: bytes | str) -> None:
        if isinstance(frame, str):
            self.violations.append("text frame from server")
            return
        m = msgpack.unpackb(frame, raw=False)
        if m.get("t") == "event":
            self._on_event(m)
            return
        re = m.get("re")
        fut = self._waiting.pop(re, None) if re is not None else None
        if fut is None:
            if re in self._answered:
                self.violations.append(f"second reply to {re}: {m}")
            elif re is not None:
                self.violations.append(f"reply to unknown command {re}: {m}")
            elif m.get("t") != "error":
                self.violations.append(f"reply without re: {m}")
            return
        self.replies += 1
        self._answered.add(re)
        sent = self._commands.pop(re, None)
        if sent is not None:
            self.on_reply(sent[0], sent[1], m)
        if not fut.done():
            fut.set_result(m)

    def _on_event(self, m: dict[str, Any]) -> None:
        log = self.hunts[m["hunt_id"]]
        seq = m["seq"]
        if log.resume_after is not None and seq == log.resume_after + 1:
            log.last, log.resume_after = seq, None
        elif log.last is not None and seq != log.last + 1:
            self.violations.append(f"hunt {m['hunt_id']}: seq {seq} after {log.last}")
            log.last = max(seq, log.last)
        else:
            log.last = seq
        if self.keep_events:
            log.events.append(m)
            self.event_delays_ms.append(time.time() * 1000 - m["at"])
        self.on_event(m)
        self._event_signal.set()

    # ---- hooks for subclasses (the bots); called as each frame is read ----------

    def on_reply(self, t: str, fields: dict[str, Any], reply: dict[str, Any]) -> None:
        """A reply to command ``t`` sent with ``fields``, before any later frame is read."""

    def on_event(self, m: dict[str, Any]) -> None:
        """An event, after the order check, before any later frame is read."""

    async def wait_event(self, hunt: str, seq: int, within_s: float = 10.0) -> dict[str, Any]:
        """The event ``seq`` of ``hunt``, once it has arrived."""

        async def arrived() -> dict[str, Any]:
            while True:
                for ev in self.hunts[hunt].events:
                    if ev["seq"] == seq:
                        return ev
                self._event_signal.clear()
                await self._event_signal.wait()

        return await asyncio.wait_for(arrived(), within_s)


async def quick_client(url: str, name: str) -> GameClient:
    client = GameClient(url, name=name)
    await client.connect()
    reply = await client.hello()
    if reply.get("t") != "welcome":
        raise RuntimeError(f"hello failed: {reply}")
    return client
