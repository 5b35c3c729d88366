"""Fuzzing the gateway with random and mutated frames against a real server.

Every frame gets exactly one reply (an error for bad input), the server never
crashes, its memory stays flat, and a bystander's game is unaffected.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from server.client import quick_client
from server.procs import rss_kb
from tests.support.server_harness import ServerProcess

VALID = [
    {"t": "ping", "id": "p"},
    {"t": "get_hunt", "id": "g", "hunt_id": "hnothere"},
    {"t": "join_hunt", "id": "j", "hunt_id": "hx"},
    {"t": "submit_answer", "id": "s", "hunt_id": "hx", "clue": 0, "answer": "a"},
    {"t": "check_in", "id": "c", "hunt_id": "hx", "clue": 0, "lat": 1.0, "lon": 2.0},
    {"t": "resume", "id": "r", "hunt_id": "hx", "after_seq": 0},
    {
        "t": "create_hunt",
        "id": "h",
        "name": "n",
        "clues": [{"text": "t", "lat": 0.0, "lon": 0.0, "points": 1}],
    },
]
LIMIT = 64 * 1024
SPECIAL = [
    b"\x91" * 60_000 + b"\xc0",  # deeply nested arrays, just under the frame limit
    msgpack.packb({"t": "ping", "id": "x" * 10_000}),
    msgpack.packb({"t": "create_hunt", "id": "big", "name": "n" * (LIMIT - 200), "clues": []}),
    msgpack.packb({"t": "ping", "id": "a", "pad": list(range(5_000))}),
    msgpack.packb(
        {"t": "check_in", "id": "n", "hunt_id": "h", "clue": 0, "lat": math.nan, "lon": 1.0}
    ),
    msgpack.packb({"t": "resume", "id": "r", "hunt_id": "h", "after_seq": -(2**63)}),
    msgpack.packb(
        {"t": "submit_answer", "id": "s", "hunt_id": "h", "clue": 2**64 - 1, "answer": "a"}
    ),
    msgpack.packb({"t": 7, "id": None}),
    b"",
    "a text frame",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def frames(draw: st.DrawFn) -> bytes | str:
    kind = draw(st.sampled_from(["random", "mutated", "field", "special"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "special":
        return draw(st.sampled_from(SPECIAL))
    base: dict[str, Any] = dict(draw(st.sampled_from(VALID)))
    if kind == "field":
        base[draw(st.sampled_from(sorted(base)))] = draw(values)
        return msgpack.packb(base)
    raw = bytearray(msgpack.packb(base))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] = draw(st.integers(0, 255))
    return bytes(raw[: draw(st.integers(1, len(raw)))])


async def _fuzz(url: str, batch: list[bytes | str]) -> None:
    async with connect(url, max_size=2**22) as ws:
        await ws.send(msgpack.packb({"t": "hello", "id": "h0", "protocol": 1, "name": "fuzz"}))
        assert msgpack.unpackb(await ws.recv())["t"] == "welcome"
        for i, frame in enumerate(batch):
            await ws.send(frame)
            reply = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
            assert reply["t"] in ("ok", "error", "event"), reply
            while reply["t"] == "event":  # a hunt the fuzzer created publishes
                reply = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
            if reply["t"] == "error":
                assert reply["code"] in (
                    "bad_frame",
                    "bad_request",
                    "unknown_type",
                    "not_found",
                    "forbidden",
                    "conflict",
                ), reply
            if i % 10 == 9:  # a good frame now and then: the bad-frame counter resets
                await ws.send(msgpack.packb({"t": "ping", "id": f"k{i}"}))
                assert msgpack.unpackb(await ws.recv())["t"] == "ok"


def _server_rss_mb(server: ServerProcess) -> float:
    return sum(rss_kb(p) for p in server.pids()) / 1024


def test_random_and_mutated_frames_get_one_error_each(server: ServerProcess) -> None:
    async def warm() -> None:
        await _fuzz(server.url, [msgpack.packb(v) for v in VALID] * 3)

    asyncio.run(warm())
    before = _server_rss_mb(server)

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(frames(), min_size=1, max_size=25))
    def fuzz(batch: list[bytes | str]) -> None:
        asyncio.run(_fuzz(server.url, batch))

    fuzz()
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    grown = _server_rss_mb(server) - before
    assert grown < 40, f"server memory grew by {grown:.1f} MB during fuzzing"


async def test_a_bystander_plays_on_while_another_client_fuzzes(server: ServerProcess) -> None:
    bystander = await quick_client(server.url, "bystander")
    fuzzer = await quick_client(server.url, "fuzzer")
    try:
        hunt = (
            await bystander.request(
                "create_hunt", name="calm", clues=[{"text": "t", "answer": "a", "points": 1}]
            )
        )["hunt_id"]
        for frame in SPECIAL * 2:
            await fuzzer.send_raw(frame)
        got = await bystander.request("get_hunt", hunt_id=hunt)
        assert got["t"] == "ok" and got["hunt"]["name"] == "calm"
        assert bystander.violations == []
    finally:
        await bystander.close()
        await fuzzer.close()
