"""The core of the end-to-end suite once more, with the server storing in Cassandra."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cassandra_node import CassandraNode, cassandra_node
from tests.support.e2e import ANSWER_CLUES, Probe, close_all, probe
from tests.support.server_harness import ServerProcess, start_server, stop_server

__all__ = ["cassandra_node"]  # the session fixture, imported so pytest finds it here

pytestmark = pytest.mark.cassandra


def start_on_cassandra(data: Path, node: CassandraNode, keyspace: str) -> ServerProcess:
    return start_server(
        data, "--store", "cassandra", "--cassandra-hosts", node.host, "--keyspace", keyspace
    )


async def play_until_the_break(url: str) -> dict[str, Any]:
    """Create, join, start, solve, a missed stretch, resume, resends; what to check later."""
    org = await probe(url, "organizer")
    ana, ben, cem = [await probe(url, n) for n in ("Ana", "Ben", "Cem")]
    ana2: Probe | None = None
    try:
        created = await org.request("create_hunt", cid="create-1", name="C*", clues=ANSWER_CLUES)
        hunt = created["hunt_id"]
        joined = await ana.request("join_hunt", hunt_id=hunt)
        assert joined["seq"] == 2 and [c["text"] for c in joined["hunt"]["clues"]] == [None] * 3
        for p in (ben, cem):
            await p.request("join_hunt", hunt_id=hunt)
        assert (await org.request("start_hunt", hunt_id=hunt))["t"] == "ok"
        for p in (org, ana, ben, cem):
            assert (await p.wait_event(hunt, 5))["kind"] == "hunt_started"

        solve: dict[str, Any] = {"hunt_id": hunt, "clue": 0, "answer": " berlin"}
        solved = await ana.request("submit_answer", cid="solve-1", **solve)
        assert (solved["correct"], solved["points"], solved["score"]) == (True, 10, 10)
        for p in (org, ana, ben, cem):
            ev = await p.wait_event(hunt, 6)
            assert ev["data"] == {"player_id": ana.player_id, "clue": 0, "points": 10, "score": 10}
        await close_all(ana)

        gate = await ben.request("check_in", hunt_id=hunt, clue=2, lat=52.5163, lon=13.3777)
        assert gate["score"] == 5
        await org.wait_event(hunt, 7)
        ana2 = await probe(url, "Ana", token=ana.token)
        resumed = await ana2.request("resume", hunt_id=hunt, after_seq=6)
        assert resumed["seq"] == 7 and ana2.kinds(hunt) == [(7, "clue_solved")]
        assert await ana2.request("submit_answer", cid="solve-1", **solve) == solved
        assert await org.request("create_hunt", cid="create-1", name="C*", clues=ANSWER_CLUES) == (
            created
        )
        view = await cem.request("get_hunt", hunt_id=hunt)
        assert view["seq"] == 7 and view["hunt"]["status"] == "running"
        assert [(p["name"], p["score"]) for p in view["hunt"]["players"]][:2] == [
            ("Ana", 10),
            ("Ben", 5),
        ]
        await cem.wait_event(hunt, 7)
        for p in (org, ben, cem):
            assert [s for s, _ in p.kinds(hunt)] == list(range(p.kinds(hunt)[0][0], 8))
        return {"hunt": hunt, "solve": solve, "solved": solved, "tokens": [org.token, ana.token]}
    finally:
        await close_all(org, ben, cem, *([ana2] if ana2 else []))


async def test_the_core_game_on_cassandra_survives_a_restart(
    cassandra_node: CassandraNode, tmp_path: Path
) -> None:
    keyspace = f"e2e_{uuid.uuid4().hex[:16]}"
    srv = start_on_cassandra(tmp_path / "data", cassandra_node, keyspace)
    try:
        played = await play_until_the_break(srv.url)
    finally:
        stop_server(srv)
    assert srv.pids() == []

    # a new server (and data dir) on the same keyspace: everything lives in Cassandra
    srv = start_on_cassandra(tmp_path / "data2", cassandra_node, keyspace)
    hunt = played["hunt"]
    try:
        org = await probe(srv.url, "x", token=played["tokens"][0])
        ana = await probe(srv.url, "x", token=played["tokens"][1])
        try:
            assert (await org.request("resume", hunt_id=hunt, after_seq=0))["seq"] == 7
            assert [k for _, k in org.kinds(hunt)] == [
                "hunt_created",
                *["player_joined"] * 3,
                "hunt_started",
                *["clue_solved"] * 2,
            ]
            assert (
                await ana.request("submit_answer", cid="solve-1", **played["solve"])
                == (played["solved"])
            )
            jupiter = await ana.request("submit_answer", hunt_id=hunt, clue=1, answer="Jupiter")
            assert (jupiter["points"], jupiter["score"]) == (20, 30)
            assert (await org.wait_event(hunt, 8))["data"]["clue"] == 1
            assert (await ana.request("resume", hunt_id=hunt, after_seq=7))["seq"] == 8
            assert (await org.request("end_hunt", hunt_id=hunt))["t"] == "ok"
            finished = await ana.wait_event(hunt, 9)
            assert finished["data"]["reason"] == "ended"
            assert finished["data"]["leaderboard"][0]["score"] == 30
        finally:
            await close_all(org, ana)
    finally:
        stop_server(srv)
    assert srv.pids() == []
