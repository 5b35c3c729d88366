"""Cassandra goes down under play and comes back: clients get ``unavailable``
quickly (never a hang, never a crash), the server recovers without a restart,
and nothing acknowledged is missing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.client import GameClient, quick_client
from tests.support.cassandra_node import CassandraNode, start_or_skip
from tests.support.server_harness import start_server, stop_server

pytestmark = pytest.mark.cassandra
UNAVAILABLE_WITHIN_S = 12.0  # store request timeout (5 s) + gateway timeout margin


@pytest.fixture
def node(tmp_path: Path) -> Iterator[CassandraNode]:
    node = start_or_skip(CassandraNode(tmp_path / "node", durable_system=True))
    try:
        yield node
    finally:
        node.stop()


async def _until_ok(client: GameClient, cid: str, deadline_s: float, **cmd: object) -> dict:
    end = time.monotonic() + deadline_s
    while True:
        reply = await client.request("submit_answer", cid, **cmd)
        if reply["t"] == "ok" or time.monotonic() > end:
            return reply
        assert reply["code"] == "unavailable", reply
        await asyncio.sleep(0.2)  # poll interval while the node comes back


async def test_cassandra_down_and_back_under_play(tmp_path: Path, node: CassandraNode) -> None:
    keyspace = f"outage_{uuid.uuid4().hex[:8]}"
    args = ["--store", "cassandra", "--cassandra-hosts", node.host, "--keyspace", keyspace]
    args += ["--answer-rate", "1000"]
    srv = start_server(tmp_path / "data", *args)
    org = await quick_client(srv.url, "org")
    player = await quick_client(srv.url, "player")
    try:
        clues = [{"text": f"t{i}", "answer": f"a{i}", "points": i + 1} for i in range(3)]
        hunt = (await org.request("create_hunt", name="h", clues=clues))["hunt_id"]
        await player.request("join_hunt", hunt_id=hunt)
        await org.request("start_hunt", hunt_id=hunt)
        first = await player.request("submit_answer", hunt_id=hunt, clue=0, answer="a0")
        assert first["score"] == 1

        outage = time.monotonic()
        node.stop()
        started = time.monotonic()
        down = await player.request("submit_answer", "s1", hunt_id=hunt, clue=1, answer="a1")
        assert down["code"] == "unavailable"
        assert time.monotonic() - started < UNAVAILABLE_WITHIN_S
        assert (await player.request("ping"))["t"] == "ok"

        node.start()  # same directory and port
        back = await _until_ok(player, "s1", 90, hunt_id=hunt, clue=1, answer="a1")
        recovered = time.monotonic() - outage
        assert back["t"] == "ok" and back["score"] == 3, back
        print(f"outage and recovery took {recovered:.1f}s")

        assert (
            await player.request("submit_answer", "s1", hunt_id=hunt, clue=1, answer="a1")
        ) == back
        final = await player.request("submit_answer", hunt_id=hunt, clue=2, answer="a2")
        assert final["score"] == 6
        resumed = await org.request("resume", hunt_id=hunt, after_seq=0)
        seqs = [e["seq"] for e in org.hunts[hunt].events]
        assert resumed["t"] == "ok" and seqs[-resumed["seq"] :] == list(
            range(1, resumed["seq"] + 1)
        )
        kinds = [e["kind"] for e in org.hunts[hunt].events[-resumed["seq"] :]]
        assert kinds.count("clue_solved") == 3 and kinds[-1] == "hunt_finished"
        assert org.violations == [] and player.violations == []
    finally:
        await org.close()
        await player.close()
        stop_server(srv)
    assert srv.pids() == []
