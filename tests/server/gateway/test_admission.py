"""The gateway's lobby: clients not past ``hello`` are rationed per loop turn, players are not."""

from __future__ import annotations

import asyncio
import selectors
import socket
import time
from collections.abc import Callable, Iterator

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from server.client import quick_client
from server.gateway import admission
from server.gateway.admission import LobbySelector, Silent, lobby_connection
from tests.support.server_harness import ServerProcess


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(12)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def _ready_fds(sel: selectors.BaseSelector) -> set[int]:
    return {key.fd for key, _ in sel.select(0)}


def _all_ready(
    pairs: list[tuple[socket.socket, socket.socket]], cap: int, players: int = 0, gap_s: float = 0
) -> LobbySelector:
    """A selector with every pair's first socket registered and ready to read (its byte
    is never read): the first ``players`` served every turn, the others in the lobby
    (which rests ``gap_s`` after a full turn)."""
    sel = LobbySelector(cap=cap, gap_s=gap_s)
    for i, (a, b) in enumerate(pairs):
        if i >= players:
            sel.lobby.enter(a.fileno())
        sel.register(a, selectors.EVENT_READ)
        b.send(b"x")
    return sel


def test_a_turn_takes_every_ready_socket_but_only_cap_from_the_lobby(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sel = _all_ready(pairs, cap=3, players=4)
    players = pairs[:4]
    ready = _ready_fds(sel)
    assert {a.fileno() for a, _ in players} <= ready
    assert len(ready - {a.fileno() for a, _ in players}) == 3
    sel.close()


def test_the_lobby_serves_its_ready_sockets_in_turn(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sel = _all_ready(pairs, cap=3)
    seen: set[int] = set()
    for _ in range(4):  # 12 ready sockets, 3 a turn
        turn = _ready_fds(sel)
        assert len(turn) == 3
        seen |= turn
    assert seen == {a.fileno() for a, _ in pairs}
    sel.close()


def test_after_a_full_turn_the_lobby_rests_and_players_are_served_meanwhile(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sel = _all_ready(pairs, cap=3, players=2, gap_s=10)
    players = {a.fileno() for a, _ in pairs[:2]}
    first = _ready_fds(sel)
    assert players < first and len(first - players) == 3  # a full turn: the lobby rests
    for _ in range(3):
        assert _ready_fds(sel) == players  # resting: only the players
    sel.close()


def test_a_wait_ends_with_the_lobby_s_rest(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    gap_s = 0.05
    sel = _all_ready(pairs, cap=3, gap_s=gap_s)
    assert len(_ready_fds(sel)) == 3  # a full turn: the lobby rests
    rested_at = time.monotonic()
    waits = [{key.fd for key, _ in sel.select(10)}]  # cut short by the rest's end
    if not waits[0]:
        waits.append({key.fd for key, _ in sel.select(10)})  # the turn after it
    waited = time.monotonic() - rested_at
    assert len(waits[-1]) == 3 and gap_s * 0.9 <= waited < 5, (waits, waited)
    sel.close()


def test_a_lobby_that_was_not_full_does_not_rest(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sel = _all_ready(pairs[:2], cap=3, gap_s=10)  # two ready sockets, three a turn
    assert len(_ready_fds(sel)) == 2
    assert len(_ready_fds(sel)) == 2  # not resting: a 10-s rest would show here
    sel.close()


def test_a_socket_that_leaves_the_lobby_is_served_every_turn(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sel = _all_ready(pairs, cap=1)
    player = pairs[5][0].fileno()
    sel.lobby.leave(player)
    for _ in range(5):
        assert player in _ready_fds(sel)
    sel.modify(pairs[5][0], selectors.EVENT_READ | selectors.EVENT_WRITE)
    sel.unregister(pairs[0][0])  # a lobby socket
    sel.unregister(pairs[5][0])
    assert player not in _ready_fds(sel)
    assert pairs[0][0].fileno() not in sel.lobby.where
    sel.close()


def test_a_websocket_waits_in_the_lobby_until_let_out_and_is_forgotten_when_closed() -> None:
    async def scenario() -> None:
        lobby = admission._LOBBIES[asyncio.get_running_loop()]
        server_side: list[ServerConnection] = []

        async def handler(ws: ServerConnection) -> None:
            server_side.append(ws)
            async for frame in ws:
                await ws.send(frame)
                if frame == b"leave":
                    admission.out_of_lobby(ws)

        async with serve(
            handler, "127.0.0.1", 0, create_connection=lobby_connection(Silent(10))
        ) as srv:
            port = srv.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/") as client:
                await client.send(b"one")
                assert await client.recv() == b"one"
                fd = server_side[0].transport.get_extra_info("socket").fileno()
                assert lobby.where[fd] is lobby.lobby
                await client.send(b"leave")
                assert await client.recv() == b"leave"
                assert lobby.where[fd] is lobby.main
                server_side[0].transport.pause_reading()  # type: ignore[attr-defined]
                assert fd not in lobby.where
                server_side[0].transport.resume_reading()  # type: ignore[attr-defined]
                await client.send(b"two")
                assert await client.recv() == b"two"
            await server_side[0].wait_closed()
            assert fd not in lobby.members

    with asyncio.Runner(loop_factory=admission.new_event_loop) as runner:
        runner.run(scenario())


def test_elsewhere_the_lobby_functions_do_nothing() -> None:
    async def scenario() -> None:
        async def handler(ws: ServerConnection) -> None:
            admission.out_of_lobby(ws)
            await ws.send(b"hi")

        async with serve(
            handler, "127.0.0.1", 0, create_connection=lobby_connection(Silent(10))
        ) as srv:
            port = srv.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/") as client:
                assert await client.recv() == b"hi"

    asyncio.run(scenario())


async def _turns_until(check: Callable[[], bool]) -> None:
    """Lets the server's side of the loop run (accepts, reads) until ``check`` holds."""
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 (no event to wait for: the loop's own callbacks)
            await asyncio.sleep(0)


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_a_silent_connection_has_no_handler_until_its_first_byte_and_is_closed_in_time() -> (
    None
):
    silent = Silent(timeout_s=0.5)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(b"hi")

    async with serve(handler, "127.0.0.1", 0, create_connection=lobby_connection(silent)) as srv:
        port = srv.sockets[0].getsockname()[1]
        mute_reader, mute = await asyncio.open_connection("127.0.0.1", port)
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
        await _turns_until(lambda: len(silent.waiting) == 2)  # accepted, neither handled
        assert srv.handler_tasks == set()
        slow.write(UPGRADE[:10])  # its first bytes start its handler
        await _turns_until(lambda: len(srv.handler_tasks) == 1)
        assert len(silent.waiting) == 1
        slow.write(UPGRADE[10:])
        status = await asyncio.wait_for(slow_reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 101")
        assert await asyncio.wait_for(mute_reader.read(), 5) == b""  # closed after 0.5 s
        assert silent.waiting == {}
        slow.close()
        mute.close()


async def test_silent_connections_are_closed_at_shutdown() -> None:
    silent = Silent(timeout_s=60)

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=lobby_connection(silent)) as srv:
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _turns_until(lambda: len(silent.waiting) == 1)
        silent.close_all()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_every_client_in_a_busy_lobby_is_answered_in_order_and_players_play_on(
    server: ServerProcess,
) -> None:
    async def chatter(i: int) -> list[str]:
        async with connect(server.url, compression=None) as ws:
            for n in range(20):  # commands before hello: each is refused, none is lost
                await ws.send(msgpack.packb({"t": "ping", "id": f"{i}-{n}"}))
            return [msgpack.unpackb(await ws.recv())["re"] for _ in range(20)]

    player = await quick_client(server.url, "player")
    try:
        crowd = asyncio.gather(*(chatter(i) for i in range(200)))
        for _ in range(20):
            assert (await player.request("ping"))["t"] == "ok"
        answered = await crowd
        assert answered == [[f"{i}-{n}" for n in range(20)] for i in range(200)]
        assert player.violations == []
    finally:
        await player.close()
