from __future__ import annotations

from server.client import GameClient, quick_client
from tests.support.server_harness import ServerProcess

CLUES = [
    {"text": "Capital of Germany?", "answer": "Berlin", "points": 10},
    {"text": "Go to the gate", "lat": 52.5163, "lon": 13.3777, "points": 5},
]


async def test_a_hunt_played_by_two_players_reaches_everyone(
    server: ServerProcess, client: GameClient
) -> None:
    created = await client.request("create_hunt", name="Berlin", clues=CLUES)
    hunt = created["hunt_id"]
    await client.wait_event(hunt, 1)
    bob = await quick_client(server.url, "Bob")
    try:
        joined = await bob.request("join_hunt", hunt_id=hunt)
        assert joined["t"] == "ok" and joined["seq"] == 2
        assert (await client.wait_event(hunt, 2))["kind"] == "player_joined"
        assert (await client.request("start_hunt", hunt_id=hunt))["t"] == "ok"
        await bob.wait_event(hunt, 3)
        solved = await bob.request("submit_answer", hunt_id=hunt, clue=0, answer=" berlin ")
        assert solved == {"t": "ok", "re": solved["re"], "correct": True, "points": 10, "score": 10}
        checked = await bob.request("check_in", hunt_id=hunt, clue=1, lat=52.5164, lon=13.3778)
        assert checked["score"] == 15
        finished = await client.wait_event(hunt, 6)
        assert finished["kind"] == "hunt_finished"
        assert finished["data"]["reason"] == "all_solved"
        assert finished["data"]["leaderboard"][0]["score"] == 15
        assert bob.violations == []
    finally:
        await bob.close()
