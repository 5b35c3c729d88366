"""Helpers shared by the end-to-end suites (``tests/test_e2e_*.py``).

``Probe`` is a ``GameClient`` that also keeps every frame it received, in
order (the plain client drops errors with ``re: null``), and that names its
commands with a prefix of its own: a player reconnecting on a new
``GameClient`` must not reuse the command ids of its earlier connection, or the
server rightly answers them from its idempotency memory.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack

from server.client import GameClient

Frame = dict[str, Any]

ANSWER_CLUES: list[dict[str, Any]] = [
    {"text": "Capital of Germany?", "answer": "Berlin", "points": 10},
    {"text": "Largest planet?", "answer": "Jupiter", "points": 20},
    {"text": "Go to the gate", "lat": 52.5163, "lon": 13.3777, "points": 5},
]
SECRET_KEYS = {"answer", "lat", "lon", "radius_m"}


class Probe(GameClient):
    def __init__(self, url: str, *, name: str = "probe", **kwargs: Any) -> None:
        super().__init__(url, name=name, **kwargs)
        self.prefix = uuid.uuid4().hex[:6]
        self.frames: list[Frame] = []
        self._frame_signal = asyncio.Event()

    def next_id(self) -> str:
        return f"{self.prefix}-{super().next_id()}"

    def _on_frame(self, frame: bytes | str) -> None:
        if isinstance(frame, bytes):
            self.frames.append(msgpack.unpackb(frame, raw=False))
            self._frame_signal.set()
        super()._on_frame(frame)

    async def wait_frame(self, match: Callable[[Frame], bool], within_s: float = 10.0) -> Frame:
        """The first frame received (so far or later) that ``match`` accepts."""

        async def arrived() -> Frame:
            while True:
                for m in self.frames:
                    if match(m):
                        return m
                self._frame_signal.clear()
                await self._frame_signal.wait()

        return await asyncio.wait_for(arrived(), within_s)

    async def send_map(self, m: dict[str, Any]) -> None:
        await self.send_raw(msgpack.packb(m))

    async def raw_request(self, m: dict[str, Any], within_s: float = 10.0) -> Frame:
        """Sends ``m`` as it is (no checks on it) and returns the reply to its ``id``."""
        cid = m["id"]
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = fut
        self.sent += 1
        await self.send_map(m)
        return await asyncio.wait_for(fut, within_s)

    async def wait_closed(self, within_s: float = 10.0) -> tuple[int | None, str]:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), within_s)
        assert self.closed is not None
        return self.closed

    def kinds(self, hunt: str) -> list[tuple[int, str]]:
        return [(e["seq"], e["kind"]) for e in self.hunts[hunt].events]

    def index_of(self, match: Callable[[Frame], bool]) -> int:
        return next(i for i, m in enumerate(self.frames) if match(m))


async def probe(url: str, name: str, token: str | None = None) -> Probe:
    """A connected client after a successful ``hello`` (a new player, or ``token``'s)."""
    c = Probe(url, name=name)
    await c.connect()
    reply = await c.hello(token)
    assert reply["t"] == "welcome", reply
    return c


async def connected(url: str, name: str = "raw") -> Probe:
    """A connected client that has not sent ``hello``."""
    c = Probe(url, name=name)
    await c.connect()
    return c


async def close_all(*clients: GameClient) -> None:
    for c in clients:
        await c.close()
    for c in clients:
        assert c.violations == [], (c.name, c.violations)


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, key) of the maps nested in ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", k
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")


def secrets_in(value: Any) -> list[str]:
    return [p for p, k in walk(value) if k in SECRET_KEYS]


def is_error(code: str, re: str | None) -> Callable[[Frame], bool]:
    return lambda m: m.get("t") == "error" and m.get("re") == re and m.get("code") == code


async def create_started_hunt(
    organizer: GameClient, players: list[GameClient], **fields: Any
) -> tuple[str, int]:
    """A running hunt with ``players`` joined; its id and latest seq."""
    fields.setdefault("clues", ANSWER_CLUES)
    fields.setdefault("name", "e2e hunt")
    created = await organizer.request("create_hunt", **fields)
    assert created["t"] == "ok", created
    hunt = created["hunt_id"]
    seq = 1
    for p in players:
        joined = await p.request("join_hunt", hunt_id=hunt)
        assert joined["t"] == "ok", joined
        seq = joined["seq"]
    started = await organizer.request("start_hunt", hunt_id=hunt)
    assert started["t"] == "ok", started
    await organizer.wait_event(hunt, seq + 1)
    return hunt, seq + 1
