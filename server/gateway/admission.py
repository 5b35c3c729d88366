"""The gateway's event loop serves players first: clients not yet past ``hello`` wait in a lobby.

A flood of connects costs the gateway's loop a handful of callbacks per connection
(read and parse the HTTP request, answer it, start the handler, later the close). Those
come ready all at once: long loop turns, in which no player's frame is answered.
The loop's epoll is given a second epoll, the lobby, for the sockets of clients that have
not said ``hello``; each loop turn takes at most ``READY_PER_TURN`` ready sockets from it,
and every ready socket of a player, the loop's wake-up pipe, the listening sockets and the
admin endpoint. A flood then costs turns of a few milliseconds; it is served as fast as
the rest allows, and its handshakes are still bound by the handshake timeout.

``READY_PER_TURN``: the fewer lobby sockets a turn takes, the shorter the turns a
bystander waits behind during a flood; 2 gave the lowest p99 of the values tried.

``LOBBY_GAP_S``: when a turn took its ``READY_PER_TURN`` and more were ready, the lobby
rests that long (it leaves the main epoll), so the lobby takes at most 2,000 sockets a
second and the loop's spare turns go to nobody rather than to the lobby. Thousands of
clients closing at once otherwise keep the gateway busy in back-to-back turns, and the
machine with it; with the rest, their closes take longer and players are not delayed.
The figures behind both: docs/performance.md.

Only the gateway's own loop (``new_event_loop``) has a lobby; elsewhere the functions here
do nothing.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time
import weakref
from collections.abc import Callable
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame, Opcode
from websockets.protocol import Event

READY_PER_TURN = 2  # see the module doc
LOBBY_GAP_S = 0.001  # see the module doc


class Lobby:
    """Stands in for the selector's ``epoll``: sockets of clients that have not said
    ``hello`` wait in a second epoll (the lobby), of which a loop turn takes at most ``cap``
    ready ones; everything else (players, the loop's own wake-up pipe, listening sockets,
    the admin endpoint) is served every turn.

    Thousands of clients closing at once make thousands of ready sockets: one long loop
    turn, or, with a plain cap on ready sockets, a queue that a player's socket joins at
    the back.
    Rationing only the lobby keeps each turn short and serves players first. The lobby is
    itself registered in the main epoll (Linux allows nesting), so it wakes the loop.
    """

    def __init__(self, main: Any, cap: int, gap_s: float = LOBBY_GAP_S) -> None:
        self.main, self.cap, self.gap_s = main, cap, gap_s
        self._resting_until = 0.0  # the lobby is out of the main epoll until then
        self.lobby = select.epoll()
        self.main.register(self.lobby.fileno(), select.EPOLLIN)
        self.members: set[int] = set()  # fds rationed, registered or not
        self.masks: dict[int, int] = {}
        self.where: dict[int, Any] = {}

    def enter(self, fd: int) -> None:
        if fd not in self.where:  # registered later, by the transport
            self.members.add(fd)

    def leave(self, fd: int) -> None:
        """Serve ``fd`` every turn from now on (a player), or forget it (closing)."""
        self.members.discard(fd)
        if self.where.get(fd) is self.lobby:
            self.lobby.unregister(fd)
            self.main.register(fd, self.masks[fd])
            self.where[fd] = self.main

    def register(self, fd: int, mask: int) -> None:
        ep = self.lobby if fd in self.members else self.main
        ep.register(fd, mask)
        self.where[fd], self.masks[fd] = ep, mask

    def modify(self, fd: int, mask: int) -> None:
        self.where[fd].modify(fd, mask)
        self.masks[fd] = mask

    def unregister(self, fd: int) -> None:
        self.masks.pop(fd, None)
        ep = self.where.pop(fd, self.main)
        ep.unregister(fd)

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        lobby = self.lobby.fileno()
        if self._resting_until:
            left = self._resting_until - time.monotonic()
            if left > 0:
                timeout = left if timeout < 0 else min(timeout, left)
            else:
                self.main.modify(lobby, select.EPOLLIN)
                self._resting_until = 0.0
        events: list[tuple[int, int]] = self.main.poll(timeout, maxevents)
        ready = [e for e in events if e[0] != lobby]
        if len(ready) != len(events):
            taken = self.lobby.poll(0, self.cap)
            ready += taken
            if len(taken) >= self.cap and self.gap_s > 0:  # more wait: they come after a rest
                self.main.modify(lobby, 0)
                self._resting_until = time.monotonic() + self.gap_s
        return ready

    def fileno(self) -> int:
        return int(self.main.fileno())

    def close(self) -> None:
        self.lobby.close()
        self.main.close()


class LobbySelector(selectors.EpollSelector):
    """``selectors.EpollSelector`` whose epoll has a lobby (it keeps the key bookkeeping)."""

    def __init__(self, cap: int = READY_PER_TURN, gap_s: float = LOBBY_GAP_S) -> None:
        super().__init__()
        self.lobby = Lobby(self._selector, cap, gap_s)  # type: ignore[has-type]
        self._selector = self.lobby


class Silent:
    """Connections that have not sent a byte yet, oldest first.

    websockets starts a handler task (with its handshake timeout) for every accepted
    connection, so every half-open connection would be a task, a coroutine, a timer and a
    future for the collector to walk while the players wait. ``LobbyConnection`` starts
    its handler at the first byte instead; until then it is one entry here, and one timer
    for all of them closes those still silent after the handshake timeout.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.waiting: dict[LobbyConnection, float] = {}  # insertion order = deadline order
        self._timer: asyncio.TimerHandle | None = None

    def add(self, conn: LobbyConnection) -> None:
        self.waiting[conn] = conn.loop.time() + self.timeout_s
        if self._timer is None:
            self._timer = conn.loop.call_later(self.timeout_s, self._sweep, conn.loop)

    def discard(self, conn: LobbyConnection) -> None:
        self.waiting.pop(conn, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self.waiting:
            conn, deadline = next(iter(self.waiting.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._sweep, loop)
                return
            del self.waiting[conn]
            conn.transport.abort()

    def close_all(self) -> None:
        """At shutdown: websockets' server only knows the connections it started handling."""
        for conn in list(self.waiting):
            conn.transport.abort()
        self.waiting.clear()


class LobbyConnection(ServerConnection):
    """A websockets server connection that starts in the lobby (see ``out_of_lobby``) and
    whose handler starts with its first byte (see ``Silent``); ``lobby_connection`` makes
    the class, bound to its ``Silent``."""

    silent: Silent
    _handled = False
    # Set by the handler: whole binary messages go to it from ``data_received``, in the
    # loop turn that read them, instead of through websockets' queue and the handler
    # task's ``recv()`` (one more turn, a future and a task step per frame).
    on_message: Callable[[bytes], None] | None = None
    _queued = False  # a message went through websockets' queue: all later ones do too

    def process_event(self, event: Event) -> None:
        if self.on_message is not None and isinstance(event, Frame):  # past the handshake
            if event.opcode is Opcode.BINARY and event.fin and not self._queued:
                self.on_message(bytes(event.data))
                return
            if event.opcode in DATA_OPCODES:  # text, or a fragment: kept in order by the queue
                self._queued = True
        super().process_event(event)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # ServerConnection.connection_made without starting the handler task
        Connection.connection_made(self, transport)
        self.silent.add(self)
        to_lobby(self)

    def data_received(self, data: bytes) -> None:
        if not self._handled:
            self._handled = True
            self.silent.discard(self)
            handler = self.loop.create_task(self.server.handler(self))
            self.server.handler_tasks.add(handler)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.silent.discard(self)
        out_of_lobby(self)  # its fd number will be reused
        super().connection_lost(exc)
        self.on_message = None  # the handler's callback refers back to this connection
        release_cycles(self)


def release_cycles(ws: ServerConnection) -> None:
    """Break the reference cycles a closed connection leaves, so that it is freed at once.

    Left to the collector, half-open connections make dozens of objects of cyclic
    garbage each: asyncio 3.11's socket transport keeps a bound method of itself
    (CPython gh-100348, cleared in ``close()`` from 3.12 on, never on a peer's close), and
    a handshake that failed keeps its exception, whose traceback holds the frame of the
    parser that refers back to the connection. The collector finds them only in a full
    collection, a long pause in which no player is served.
    """
    transport = ws.transport
    if getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = None  # type: ignore[attr-defined]
    for kept in (ws.protocol.handshake_exc, ws.protocol.parser_exc):
        exc: BaseException | None = kept
        for _ in range(8):  # the chain of causes (websockets' are short)
            if exc is None:
                break
            exc.__traceback__ = None
            exc = exc.__cause__ or exc.__context__


def lobby_connection(silent: Silent) -> type[LobbyConnection]:
    """The ``create_connection`` class for ``websockets.serve`` that waits in ``silent``."""
    return type("SilentLobbyConnection", (LobbyConnection,), {"silent": silent})


_LOBBIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Lobby] = weakref.WeakKeyDictionary()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The gateway's loop: an asyncio selector loop whose epoll has a lobby."""
    selector = LobbySelector()
    loop = asyncio.SelectorEventLoop(selector)
    _LOBBIES[loop] = selector.lobby
    return loop


def lobby_size(loop: asyncio.AbstractEventLoop) -> int:
    """How many connections wait in ``loop``'s lobby (0 for a loop without one)."""
    lobby = _LOBBIES.get(loop)
    return 0 if lobby is None else len(lobby.members)


def _fd(ws: ServerConnection) -> int | None:
    sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
    return None if sock is None else int(sock.fileno())


def to_lobby(ws: ServerConnection) -> None:
    lobby, fd = _LOBBIES.get(ws.loop), _fd(ws)
    if lobby is not None and fd is not None:
        lobby.enter(fd)


def out_of_lobby(ws: ServerConnection) -> None:
    lobby, fd = _LOBBIES.get(ws.loop), _fd(ws)
    if lobby is not None and fd is not None:
        lobby.leave(fd)
