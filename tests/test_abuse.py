"""Abusive clients meet documented limits; loopback load tests are exempt by default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.client import GameClient, quick_client
from server.guard import Guard, Limits
from tests.server_harness import ServerProcess, start_server, stop_server


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
