"""Accepting on a thread of its own, at a pace; and closed connections that free themselves."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import Protocol

from server.gateway.acceptor import MAX_PENDING, Acceptor, Pacer, listen
from server.gateway.admission import LobbyConnection, Silent, lobby_connection


def test_a_pacer_lets_a_burst_through_then_one_per_period() -> None:
    pacer = Pacer(rate=100, burst_s=0.1)  # a burst of 10 (and the one at its start)
    waits = [pacer.take(now=50.0) for _ in range(13)]
    assert all(w <= 0 for w in waits[:11])
    assert waits[11:] == pytest.approx([0.01, 0.02])
    # a second later the burst is there again; time that passed is not saved beyond it
    assert [pacer.take(now=51.0) <= 0 for _ in range(12)] == [True] * 11 + [False]


def test_a_pacer_without_a_rate_never_waits() -> None:
    pacer = Pacer(rate=0)
    assert {pacer.take(now=1.0) for _ in range(1000)} == {0.0}


class _Made(asyncio.Protocol):
    """Connections made, and an event set once ``_Made.expect`` of them are."""

    made: list[_Made] = []
    expect = 0
    reached: asyncio.Event

    @classmethod
    def reset(cls, expect: int) -> None:
        cls.made, cls.expect, cls.reached = [], expect, asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        _Made.made.append(self)
        if len(_Made.made) >= _Made.expect:
            _Made.reached.set()


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = listen("127.0.0.1", 0, 64)
    yield sock
    sock.close()


def _connect(sock: socket.socket, n: int) -> list[socket.socket]:
    return [socket.create_connection(sock.getsockname()[:2]) for _ in range(n)]


async def test_connections_are_accepted_on_a_thread_and_made_on_the_loop(
    listening: socket.socket,
) -> None:
    _Made.reset(expect=30)
    loop = asyncio.get_running_loop()
    acceptor = Acceptor(loop, listening, _Made)
    acceptor.start()
    clients = _connect(listening, 30)
    try:
        await asyncio.wait_for(_Made.reached.wait(), 10)
        assert acceptor.accepted == 30
        assert acceptor._thread.ident != threading.get_ident()
        peers = {m.transport.get_extra_info("peername") for m in _Made.made}
        assert peers == {c.getsockname() for c in clients}
    finally:
        await asyncio.to_thread(acceptor.stop)
        for m in _Made.made:
            m.transport.close()
        for c in clients:
            c.close()
    assert not acceptor._thread.is_alive()


async def test_past_its_burst_a_connection_waits_in_the_kernel_and_stop_ends_the_wait(
    listening: socket.socket,
) -> None:
    _Made.reset(expect=1)
    clients = _connect(listening, 3)  # queued before the acceptor starts
    acceptor = Acceptor(asyncio.get_running_loop(), listening, _Made, rate_per_s=0.001)
    acceptor.pacer.burst_s = 0.0  # one now, the next in 1,000 s
    acceptor.start()
    try:
        await asyncio.wait_for(_Made.reached.wait(), 10)
        assert acceptor.accepted == 1
        # the other two are still in the listening socket's queue
        assert select.select([listening], [], [], 0)[0] == [listening]
        assert acceptor.waiting() == 2
    finally:
        await asyncio.wait_for(asyncio.to_thread(acceptor.stop), 5)
        for m in _Made.made:
            m.transport.close()
        for c in clients:
            c.close()
    assert acceptor.accepted == 1


class _FailsOnce(socket.socket):
    """A listening socket whose first ``accept`` fails as a bug would."""

    failed = False

    def accept(self) -> tuple[socket.socket, Any]:
        if not _FailsOnce.failed:
            _FailsOnce.failed = True
            raise RuntimeError("boom")
        return super().accept()


async def test_a_failure_in_the_acceptor_is_logged_and_accepting_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _Made.reset(expect=1)
    with _FailsOnce(socket.AF_INET, socket.SOCK_STREAM) as flaky:
        flaky.bind(("127.0.0.1", 0))
        flaky.listen(8)
        acceptor = Acceptor(asyncio.get_running_loop(), flaky, _Made)
        acceptor.retry_after_s = 0.01
        acceptor.start()
        clients = _connect(flaky, 1)
        try:
            await asyncio.wait_for(_Made.reached.wait(), 10)
            # the failed turn gave its place back: all of them are free again
            assert acceptor.room._value == MAX_PENDING  # type: ignore[attr-defined]
        finally:
            await asyncio.to_thread(acceptor.stop)
            for m in _Made.made:
                m.transport.close()
            clients[0].close()
    assert _FailsOnce.failed and acceptor.accepted == 1
    assert "the acceptor failed" in caplog.text and "boom" in caplog.text


# ---- a closed connection leaves no cyclic garbage ----------------------------------


def _handshake(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _clients(port: int) -> None:
    """Blocking clients (no asyncio objects of their own), each ending differently."""
    for way in range(40):
        with socket.create_connection(("127.0.0.1", port)) as c:
            if way % 4 == 1:
                c.sendall(b"GET / HTT")  # half a request, then gone
            elif way % 4 >= 2:
                c.sendall(_handshake(port))
                assert c.recv(4096).startswith(b"HTTP/1.1 101")
                if way % 4 == 3:
                    c.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # close frame 1000
                    c.recv(64)
            # way 0: connected, never a byte


async def test_closed_connections_are_freed_without_the_collector() -> None:
    lost = 0
    all_lost = asyncio.Event()
    base = lobby_connection(Silent(10.0))

    class Counted(base):  # type: ignore[valid-type,misc]
        def connection_lost(self, exc: Exception | None) -> None:
            nonlocal lost
            super().connection_lost(exc)
            lost += 1
            if lost == 40:
                all_lost.set()

    class Player:  # as the gateway's: the connection's callback refers back to it
        def __init__(self, ws: ServerConnection) -> None:
            self.ws = ws

        def on_frame(self, frame: bytes) -> None:
            pass

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, LobbyConnection)
        ws.on_message = Player(ws).on_frame
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with serve(handler, "127.0.0.1", 0, create_connection=Counted) as server:
            port = server.sockets[0].getsockname()[1]
            await asyncio.to_thread(_clients, port)
            await asyncio.wait_for(all_lost.wait(), 10)
            await asyncio.sleep(0)  # the handlers' last steps
            gc.collect()
            kinds = [type(o) for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    left = [k.__name__ for k in kinds if issubclass(k, (Protocol, asyncio.BaseTransport))]
    assert left == []
