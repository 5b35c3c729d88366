"""The documented limits over real WebSockets: frame size, bad frames in a row, rate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from tests.support.e2e import close_all, create_started_hunt, probe
from tests.support.server_harness import ServerProcess, start_server, stop_server

DEFAULT_MAX = 64 * 1024
SMALL_MAX = 2048
RATE, BURST = 2, 5
CLOSE_POLICY, CLOSE_TOO_BIG = 1008, 1009


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a low rate limit and a small frame limit."""
    srv = start_server(
        tmp_path_factory.mktemp("strict") / "data",
        *("--rate-per-s", str(RATE), "--rate-burst", str(BURST)),
        *("--max-frame-bytes", str(SMALL_MAX)),
    )
    yield srv
    stop_server(srv)
    assert srv.pids() == [], "server processes left after SIGTERM"


def frame_of(size: int, m: dict[str, Any], pad_key: str = "pad") -> bytes:
    """``m`` packed into exactly ``size`` bytes, padded by the string field ``pad_key``."""
    empty = len(msgpack.packb({**m, pad_key: ""}))
    for header in range(5):  # a longer string takes a longer length header
        frame = msgpack.packb({**m, pad_key: "x" * (size - empty - header)})
        if len(frame) == size:
            return frame
    raise AssertionError(f"cannot pack {m} into {size} bytes")


async def check_frame_limit(url: str, limit: int) -> None:
    c = await probe(url, "big frames")
    try:
        just = frame_of(limit, {"t": "ping", "id": "just-under"})
        await c.send_raw(just)
        ok = await c.wait_frame(lambda m: m.get("re") == "just-under")
        assert ok["t"] == "ok", ok
        named = frame_of(limit, {"t": "create_hunt", "id": "big-name", "clues": []}, "name")
        await c.send_raw(named)
        bad = await c.wait_frame(lambda m: m.get("re") == "big-name")
        assert bad["code"] == "bad_request" and bad["message"].startswith("name"), bad
        assert (await c.request("ping"))["t"] == "ok"

        await c.send_raw(frame_of(limit + 1, {"t": "ping", "id": "too-big"}))
        code, _ = await c.wait_closed()
        assert code == CLOSE_TOO_BIG
        assert not any(m.get("re") == "too-big" for m in c.frames)
    finally:
        await c.close()
    # the server lives on for everyone else
    other = await probe(url, "after")
    await close_all(other)


async def test_frames_above_64_kib_close_with_1009(server: ServerProcess) -> None:
    await check_frame_limit(server.url, DEFAULT_MAX)


async def test_the_frame_limit_is_configurable(strict_server: ServerProcess) -> None:
    await check_frame_limit(strict_server.url, SMALL_MAX)


async def test_many_bad_frames_in_a_row_close_with_1008(server: ServerProcess) -> None:
    c = await probe(server.url, "noisy")
    try:
        for _ in range(2):  # 19 in a row are tolerated; a good frame resets the count
            for _ in range(19):
                await c.send_raw(b"\xc1")
            assert (await c.request("ping"))["t"] == "ok"
        assert sum(1 for m in c.frames if m.get("code") == "bad_frame") == 38
        for _ in range(20):
            await c.send_raw(b"\xc1")
        code, reason = await c.wait_closed()
        assert code == CLOSE_POLICY and reason
        assert sum(1 for m in c.frames if m.get("code") == "bad_frame") == 38 + 20
    finally:
        await c.close()


async def test_commands_beyond_the_rate_are_rate_limited_and_not_applied(
    strict_server: ServerProcess,
) -> None:
    org = await probe(strict_server.url, "organizer")  # each connection has its own bucket
    fast = await probe(strict_server.url, "fast")
    try:
        clues = [{"text": f"say a{i}", "answer": f"a{i}", "points": 1 + i} for i in range(12)]
        hunt = (await org.request("create_hunt", name="rate", clues=clues))["hunt_id"]
        assert (await fast.request("join_hunt", hunt_id=hunt))["t"] == "ok"
        assert (await org.request("start_hunt", hunt_id=hunt))["t"] == "ok"

        replies = await asyncio.gather(
            *(
                fast.request("submit_answer", cid=f"a{i}", hunt_id=hunt, clue=i, answer=f"a{i}")
                for i in range(12)
            )
        )
        codes = [r.get("code", "ok") for r in replies]
        assert set(codes) == {"ok", "rate_limited"}, codes
        applied = [i for i, r in enumerate(replies) if r["t"] == "ok"]
        refused = [i for i, r in enumerate(replies) if r.get("code") == "rate_limited"]
        assert len(refused) >= 12 - BURST, codes
        assert all(replies[i]["correct"] for i in applied)

        seq = 3 + len(applied)  # created, joined, started, one clue_solved per applied answer
        view = await org.request("get_hunt", hunt_id=hunt)
        assert view["seq"] == seq
        (me,) = view["hunt"]["players"]
        assert sorted(me["solved"]) == applied
        assert me["score"] == sum(1 + i for i in applied)
        await org.wait_event(hunt, seq)
        assert [e["data"]["clue"] for e in org.hunts[hunt].events[3:]] == applied

        # not remembered: once the bucket has refilled, the same id is tried again
        await asyncio.sleep(1.5 / RATE)  # time for the bucket to refill, not for an answer
        i = refused[0]
        retried = await fast.request(
            "submit_answer", cid=f"a{i}", hunt_id=hunt, clue=i, answer=f"a{i}"
        )
        assert (retried["t"], retried["correct"], retried["points"]) == ("ok", True, 1 + i)
        assert (await org.wait_event(hunt, seq + 1))["data"]["clue"] == i
    finally:
        await close_all(org, fast)


@pytest.fixture(scope="module")
def roomy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose rate limit lets one client send a thousand commands at once."""
    srv = start_server(
        tmp_path_factory.mktemp("roomy") / "data", "--rate-per-s", "100000", "--rate-burst", "5000"
    )
    yield srv
    stop_server(srv)
    assert srv.pids() == [], "server processes left after SIGTERM"


async def test_the_last_thousand_command_ids_are_remembered(roomy_server: ServerProcess) -> None:
    org = await probe(roomy_server.url, "organizer")
    ana = await probe(roomy_server.url, "Ana")
    try:
        hunt, _ = await create_started_hunt(org, [ana])
        solve = {"hunt_id": hunt, "clue": 0, "answer": "Berlin"}
        first = await ana.request("submit_answer", cid="first", **solve)
        assert (first["points"], first["score"]) == (10, 10)
        joins = await asyncio.gather(  # "first" becomes the 1,000th most recent id
            *(ana.request("join_hunt", cid=f"j{i}", hunt_id=hunt) for i in range(999))
        )
        assert {r["t"] for r in joins} == {"ok"}
        # forgotten, it would be answered anew: correct, but 0 points (already solved)
        assert await ana.request("submit_answer", cid="first", **solve) == first
        assert (await ana.request("get_hunt", hunt_id=hunt))["seq"] == 4
    finally:
        await close_all(org, ana)
