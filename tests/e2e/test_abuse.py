"""Abusive clients meet documented limits; loopback load tests are exempt by default."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from server.client import GameClient, quick_client
from server.gateway.guard import Guard, Limits
from server.procs import rss_kb
from tests.support.admin import scrape, total, until_gauge
from tests.support.server_harness import ServerProcess, start_server, stop_server


def test_loopback_is_exempt_from_per_address_limits_by_default() -> None:
    guard = Guard(Limits(max_conns_per_ip=1, hello_rate_per_ip=0.0, hello_burst_per_ip=1))
    for _ in range(3):
        assert guard.check("127.0.0.1") is None
        guard.admit("127.0.0.1")
        assert guard.allow_registration("127.0.0.1")
    assert guard.check("203.0.113.9") is None
    guard.admit("203.0.113.9")
    assert guard.check("203.0.113.9") == "too many connections from your address"
    assert guard.allow_registration("203.0.113.9")
    assert not guard.allow_registration("203.0.113.9")
    guard.release("203.0.113.9")
    assert guard.check("203.0.113.9") is None


def test_the_global_cap_refuses_everyone() -> None:
    guard = Guard(Limits(max_connections=2))
    guard.admit("127.0.0.1")
    guard.admit("127.0.0.2")
    assert guard.check("127.0.0.3") == "server full"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    data = tmp_path_factory.mktemp("strict") / "data"
    flags = ["--limit-loopback", "1", "--max-conns-per-ip", "4", "--hello-rate-per-ip", "0.001"]
    srv = start_server(data, *flags, "--answer-rate", "0.001")
    yield srv  # type: ignore[misc]
    stop_server(srv)
    assert srv.pids() == []


async def test_too_many_connections_from_one_address_get_429(strict: ServerProcess) -> None:
    clients = [GameClient(strict.url) for _ in range(4)]
    for c in clients:
        await c.connect()
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(strict.url):
                pass
        assert refused.value.response.status_code == 429
    finally:
        for c in clients:
            await c.close()
    async with connect(strict.url) as ws:  # places free up again
        await ws.send(msgpack.packb({"t": "ping", "id": "p"}))
        assert msgpack.unpackb(await ws.recv())["code"] == "not_authenticated"


async def test_a_registration_flood_is_rate_limited(strict: ServerProcess) -> None:
    codes = []
    for i in range(60):  # the burst is 50 registrations per address
        client = GameClient(strict.url)
        await client.connect()
        try:
            reply = await client.request("hello", protocol=1, name=f"n{i}")
            codes.append(reply.get("code", reply["t"]))
            assert client.violations == []
        finally:
            await client.close()
    assert codes[:50] == ["welcome"] * 50
    assert set(codes[50:]) == {"rate_limited"}


async def test_answer_brute_force_is_rate_limited_and_nothing_is_applied(
    server: ServerProcess,
) -> None:
    data = Path(server.data_dir).parent / "brute"
    srv = start_server(data, "--answer-rate", "0.001")
    org = await quick_client(srv.url, "org")
    thief = await quick_client(srv.url, "thief")
    try:
        clues = [{"text": "t", "answer": "secret", "points": 5}]
        hunt = (await org.request("create_hunt", name="h", clues=clues))["hunt_id"]
        await thief.request("join_hunt", hunt_id=hunt)
        await org.request("start_hunt", hunt_id=hunt)
        replies = [
            await thief.request("submit_answer", hunt_id=hunt, clue=0, answer=f"guess{i}")
            for i in range(30)
        ]
        limited = [r for r in replies if r.get("code") == "rate_limited"]
        assert len(limited) >= 5  # the burst of 20 is spent, the rest are refused
        resent = await thief.request(
            "submit_answer", limited[0]["re"], hunt_id=hunt, clue=0, answer="secret"
        )
        assert resent.get("code") == "rate_limited"  # still limited, and not remembered
        view = await org.request("get_hunt", hunt_id=hunt)
        assert view["hunt"]["players"][0]["score"] == 0
    finally:
        await org.close()
        await thief.close()
        stop_server(srv)
    assert srv.pids() == []


async def test_a_client_that_never_reads_is_closed_and_memory_stays_flat(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path / "data", "--out-queue-frames", "50", "--rate-burst", "2000")
    org = await quick_client(srv.url, "org")
    try:
        clues = [{"text": "x" * 500, "answer": "a", "points": 1} for _ in range(100)]
        hunt = (await org.request("create_hunt", name="big", clues=clues))["hunt_id"]
        before = sum(rss_kb(p) for p in srv.pids())
        async with connect(srv.url, max_queue=1, compression=None) as lazy:
            await lazy.send(msgpack.packb({"t": "hello", "id": "h", "protocol": 1, "name": "lazy"}))
            for i in range(1500):  # ~80 MB of replies it never reads
                await lazy.send(msgpack.packb({"t": "get_hunt", "id": f"g{i}", "hunt_id": hunt}))
            await asyncio.wait_for(_until(lambda: srv.log_has("too slow")), 30)
        grown_mb = (sum(rss_kb(p) for p in srv.pids()) - before) / 1024
        assert grown_mb < 60, f"server grew {grown_mb:.0f} MB holding a slow client's frames"
        assert (await org.request("ping"))["t"] == "ok"  # everyone else plays on
    finally:
        await org.close()
        stop_server(srv)
    assert srv.pids() == []


async def test_half_open_connections_are_dropped_after_the_handshake_timeout(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path / "data", "--handshake-timeout-s", "1")
    sockets: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(500):  # TCP connects that never send a handshake
            sockets.append(await asyncio.open_connection("127.0.0.1", srv.port))
        bystander = await quick_client(srv.url, "bystander")
        assert (await bystander.request("ping"))["t"] == "ok"
        await bystander.close()
        for reader, _ in sockets:  # the server hangs up on each of them by itself
            assert await asyncio.wait_for(reader.read(), 15) == b""
    finally:
        for _, writer in sockets:
            writer.close()
        stop_server(srv)
    assert srv.pids() == []


async def test_a_flood_of_5000_connections_at_once_is_served(server: ServerProcess) -> None:
    async def one() -> ClientConnection | None:
        try:
            return await connect(server.url, compression=None, open_timeout=60)
        except (OSError, InvalidStatus):
            return None

    bystander = await quick_client(server.url, "bystander")
    before = await scrape(server)
    lobby = total(before, "treasure_lobby_connections")
    try:
        flood = await asyncio.gather(*(one() for _ in range(5000)))
        opened = [ws for ws in flood if ws is not None]
        assert len(opened) == 5000, f"{5000 - len(opened)} of 5,000 connects failed"
        assert (await bystander.request("ping"))["t"] == "ok"
        after = await scrape(server)
        assert total(after, "treasure_lobby_connections") == lobby + 5000
        accepted = total(after, "treasure_accepted_connections")
        assert accepted == total(before, "treasure_accepted_connections") + 5000
        assert total(after, "treasure_accept_queue") == 0  # every one of them was let in
        await asyncio.gather(*(ws.close() for ws in opened))
        await until_gauge(server, "treasure_lobby_connections", lobby)  # none left behind
        assert bystander.violations == []
    finally:
        await bystander.close()


async def _until(check: Callable[[], bool]) -> None:
    """Polls what another process wrote (its log); callers bound it with a deadline."""
    while not check():  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def test_new_connections_past_the_accept_rate_wait_in_the_kernel_queue(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path / "data", "--accept-rate", "2")  # one now, then one per 0.5 s
    clients: list[socket.socket] = []
    try:
        clients = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(10)]
        metrics = await scrape(srv)
        # at most the first and one more per 0.5 s since then are in: most still wait
        assert total(metrics, "treasure_accept_queue") >= 5
        assert total(metrics, "treasure_accepted_connections") <= 5
        # and a client that waits its turn is served (by the pace, within ~5 s)
        async with connect(srv.url, compression=None, open_timeout=30) as ws:
            await ws.send(msgpack.packb({"t": "ping", "id": "waited"}))
            assert msgpack.unpackb(await ws.recv())["code"] == "not_authenticated"
    finally:
        for c in clients:
            c.close()
        stop_server(srv)
    assert srv.pids() == []
