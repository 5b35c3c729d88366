"""Sessions over time: reconnect and resume, idempotent resends, restarts, timed hunts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from server.gateway.session import RESTORED_HOLD_S
from tests.support.e2e import ANSWER_CLUES, Probe, close_all, create_started_hunt, probe
from tests.support.server_harness import ServerProcess, start_server, stop_server


def reply_index(c: Probe, re: str) -> int:
    return c.index_of(lambda m: m.get("re") == re and m["t"] != "event")


def event_index(c: Probe, hunt: str, seq: int) -> int:
    return c.index_of(lambda m: m["t"] == "event" and m["hunt_id"] == hunt and m["seq"] == seq)


async def test_resume_after_a_reconnect_sends_what_was_missed_then_live_events(
    server: ServerProcess,
) -> None:
    org = await probe(server.url, "organizer")
    ana = await probe(server.url, "Ana")
    ben = await probe(server.url, "Ben")
    ana2: Probe | None = None
    try:
        hunt, seq = await create_started_hunt(org, [ana, ben])
        assert seq == 4
        await ana.wait_event(hunt, 4)
        await close_all(ana)  # Ana is away while Ben plays

        for clue, answer in [(0, "Berlin"), (1, "Jupiter")]:
            assert (await ben.request("submit_answer", hunt_id=hunt, clue=clue, answer=answer))[
                "correct"
            ]
        await org.wait_event(hunt, 6)

        ana2 = await probe(server.url, "ignored", token=ana.token)
        assert (ana2.player_id, ana2.frames[0]["name"]) == (ana.player_id, "Ana")
        resumed = await ana2.request("resume", hunt_id=hunt, after_seq=4)
        assert resumed == {"t": "ok", "re": resumed["re"], "seq": 6}
        assert ana2.kinds(hunt) == [(5, "clue_solved"), (6, "clue_solved")]
        reply_at = reply_index(ana2, resumed["re"])
        assert event_index(ana2, hunt, 5) < event_index(ana2, hunt, 6) < reply_at
        assert ana2.hunts[hunt].events[0]["data"]["player_id"] == ben.player_id

        gate = await ben.request("check_in", hunt_id=hunt, clue=2, lat=52.5163, lon=13.3777)
        assert gate["score"] == 35
        live = await ana2.wait_event(hunt, 7)
        assert live["kind"] == "clue_solved" and ana2.kinds(hunt)[-1] == (7, "clue_solved")

        again = await ana2.request("resume", hunt_id=hunt, after_seq=0)  # from the start
        assert again["seq"] == 7
        assert [s for s, _ in ana2.kinds(hunt)[3:]] == [1, 2, 3, 4, 5, 6, 7]
    finally:
        await close_all(org, ben, *([ana2] if ana2 else []))


async def test_a_reconnected_player_gets_live_events_without_resume(
    server: ServerProcess,
) -> None:
    org = await probe(server.url, "organizer")
    ana = await probe(server.url, "Ana")
    org2: Probe | None = None
    try:
        hunt, seq = await create_started_hunt(org, [ana])
        await close_all(org)
        org2 = await probe(server.url, "organizer", token=org.token)
        await ana.request("submit_answer", hunt_id=hunt, clue=0, answer="Berlin")
        # Held until the client resumes, or RESTORED_HOLD_S after its hello: the test's
        # wait must outlast that hold, not race it.
        ev = await org2.wait_event(hunt, seq + 1, within_s=RESTORED_HOLD_S + 10)
        assert ev["kind"] == "clue_solved" and ev["data"]["player_id"] == ana.player_id
    finally:
        await close_all(ana, *([org2] if org2 else []))


async def test_resent_commands_across_reconnects_get_the_first_reply_and_apply_once(
    server: ServerProcess,
) -> None:
    org = await probe(server.url, "organizer")
    ana = await probe(server.url, "Ana")
    later: list[Probe] = []
    try:
        create = {"name": "once", "clues": ANSWER_CLUES}
        created = await org.request("create_hunt", cid="create-1", **create)
        hunt = created["hunt_id"]
        joined = await ana.request("join_hunt", cid="join-1", hunt_id=hunt)
        started = await org.request("start_hunt", cid="start-1", hunt_id=hunt)
        assert started["t"] == "ok"
        solve: dict[str, Any] = {"hunt_id": hunt, "clue": 0, "answer": "Berlin"}
        solved = await ana.request("submit_answer", cid="solve-1", **solve)
        assert (solved["correct"], solved["points"], solved["score"]) == (True, 10, 10)
        await org.wait_event(hunt, 4)
        await close_all(org, ana)

        org2 = await probe(server.url, "organizer", token=org.token)
        ana2 = await probe(server.url, "Ana", token=ana.token)
        later += [org2, ana2]
        assert await org2.request("create_hunt", cid="create-1", **create) == created
        assert await org2.request("start_hunt", cid="start-1", hunt_id=hunt) == started
        assert await ana2.request("submit_answer", cid="solve-1", **solve) == solved
        rejoined = await ana2.request("join_hunt", cid="join-1", hunt_id=hunt)
        assert rejoined["t"] == "ok" and rejoined["hunt"]["hunt_id"] == joined["hunt"]["hunt_id"]

        view = await ana2.request("get_hunt", hunt_id=hunt)
        assert view["seq"] == 4  # no event from any resend
        assert view["hunt"]["players"][0]["score"] == 10  # not doubled
        assert view["hunt"]["players"][0]["solved"] == [0]
        # a new command is applied, with the next seq: nothing was stored in between
        jupiter = await ana2.request("submit_answer", hunt_id=hunt, clue=1, answer="Jupiter")
        assert (jupiter["points"], jupiter["score"]) == (20, 30)
        await org2.request("resume", hunt_id=hunt, after_seq=0)
        assert org2.kinds(hunt) == [
            (1, "hunt_created"),
            (2, "player_joined"),
            (3, "hunt_started"),
            (4, "clue_solved"),
            (5, "clue_solved"),
        ]
        # a different id is a different command: starting again is a conflict
        assert (await org2.request("start_hunt", hunt_id=hunt))["code"] == "conflict"
        ended = await org2.request("end_hunt", cid="end-1", hunt_id=hunt)
        assert await org2.request("end_hunt", cid="end-1", hunt_id=hunt) == ended
        assert (await org2.request("end_hunt", cid="end-2", hunt_id=hunt))["code"] == "conflict"
    finally:
        await close_all(*later)


async def test_a_timed_hunt_finishes_by_itself(server: ServerProcess) -> None:
    org = await probe(server.url, "organizer")
    ana = await probe(server.url, "Ana")
    try:
        hunt, seq = await create_started_hunt(org, [ana], duration_s=10)
        view = (await ana.request("get_hunt", hunt_id=hunt))["hunt"]
        assert view["ends_at"] == view["started_at"] + 10_000
        started = await ana.wait_event(hunt, seq)
        assert started["kind"] == "hunt_started"
        assert started["data"] == {"ends_at": view["ends_at"]}
        await ana.request("submit_answer", hunt_id=hunt, clue=0, answer="Berlin")

        finished = await org.wait_event(hunt, seq + 2, within_s=25)
        assert time.time() * 1000 >= view["ends_at"]
        assert finished["kind"] == "hunt_finished"
        assert finished["data"]["reason"] == "time_up"
        assert finished["at"] >= view["ends_at"]
        board = finished["data"]["leaderboard"]
        assert [(e["player_id"], e["score"], e["solved"]) for e in board] == [
            (ana.player_id, 10, [0])
        ]
        assert (await ana.wait_event(hunt, seq + 2))["kind"] == "hunt_finished"
        late = await ana.request("submit_answer", hunt_id=hunt, clue=1, answer="Jupiter")
        assert late["code"] == "conflict"
        assert (await ana.request("get_hunt", hunt_id=hunt))["hunt"]["status"] == "finished"
    finally:
        await close_all(org, ana)


async def test_tokens_subscriptions_and_replies_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    try:
        org = await probe(srv.url, "organizer")
        ana = await probe(srv.url, "Ana")
        ben = await probe(srv.url, "Ben")
        hunt, _ = await create_started_hunt(org, [ana, ben])
        solve: dict[str, Any] = {"hunt_id": hunt, "clue": 0, "answer": "Berlin"}
        solved = await ana.request("submit_answer", cid="before-restart", **solve)
        assert solved["score"] == 10
        await ben.wait_event(hunt, 5)
        await close_all(org, ana, ben)
    finally:
        stop_server(srv)
    assert srv.pids() == []

    srv = start_server(data)
    try:
        org2 = await probe(srv.url, "x", token=org.token)
        ana2 = await probe(srv.url, "x", token=ana.token)
        ben2 = await probe(srv.url, "x", token=ben.token)
        assert [c.player_id for c in (org2, ana2, ben2)] == [
            org.player_id,
            ana.player_id,
            ben.player_id,
        ]
        assert [c.frames[0]["name"] for c in (org2, ana2, ben2)] == ["organizer", "Ana", "Ben"]
        resumed = await ana2.request("resume", hunt_id=hunt, after_seq=5)
        assert resumed["seq"] == 5 and ana2.kinds(hunt) == []
        assert await ana2.request("submit_answer", cid="before-restart", **solve) == solved
        missed = await ben2.request("resume", hunt_id=hunt, after_seq=3)
        assert missed["seq"] == 5 and ben2.kinds(hunt) == [(4, "hunt_started"), (5, "clue_solved")]

        ben_solved = await ben2.request("submit_answer", **solve)
        assert (ben_solved["points"], ben_solved["score"]) == (10, 10)
        for c in (org2, ana2, ben2):  # org2 never resumed: its subscription was restored
            # and holds live events for RESTORED_HOLD_S from its hello, which can be
            # only milliseconds before this wait starts
            ev = await c.wait_event(hunt, 6, within_s=RESTORED_HOLD_S + 10)
            assert ev["kind"] == "clue_solved" and ev["data"]["player_id"] == ben.player_id
        view = (await org2.request("get_hunt", hunt_id=hunt))["hunt"]
        assert view["status"] == "running"
        assert [(p["name"], p["score"]) for p in view["players"]] == [("Ana", 10), ("Ben", 10)]
        await close_all(org2, ana2, ben2)
    finally:
        stop_server(srv)
    assert srv.pids() == []


async def test_every_connection_of_a_player_gets_the_events_of_its_hunts(
    server: ServerProcess,
) -> None:
    """Two connections of one player: hunts joined, created or left on one count for both."""
    org = await probe(server.url, "organizer")
    ana = await probe(server.url, "Ana")
    org_tab = await probe(server.url, "x", token=org.token)
    ana_tab = await probe(server.url, "x", token=ana.token)
    try:
        hunt, seq = await create_started_hunt(org, [ana])
        assert seq == 3
        for c in (org_tab, ana_tab):
            assert (await c.wait_event(hunt, 3))["kind"] == "hunt_started"
        await ana.request("submit_answer", hunt_id=hunt, clue=0, answer="Berlin")
        for c in (org, ana, org_tab, ana_tab):
            assert (await c.wait_event(hunt, 4))["kind"] == "clue_solved"
        assert (await ana_tab.request("leave_hunt", hunt_id=hunt))["t"] == "ok"
        assert (await org_tab.request("end_hunt", hunt_id=hunt))["t"] == "ok"
        for c in (org, org_tab):
            assert (await c.wait_event(hunt, 6))["kind"] == "hunt_finished"
        await ana.request("ping")  # what the gateway sent Ana's connections is in by now
        await ana_tab.request("ping")
        assert [s for s, _ in ana.kinds(hunt)] == [3, 4]  # nothing after leaving
        assert [s for s, _ in ana_tab.kinds(hunt)] == [3, 4]
        assert [s for s, _ in org_tab.kinds(hunt)] == [1, 2, 3, 4, 5, 6]
    finally:
        await close_all(org, ana, org_tab, ana_tab)


async def test_under_concurrent_load_creators_and_joiners_miss_no_event(
    server: ServerProcess,
) -> None:
    """Events of the batch that answers a create or a join reach its sender too."""
    orgs = [await probe(server.url, f"org{i}") for i in range(10)]
    players = [await probe(server.url, f"p{i}") for i in range(12)]
    try:

        async def create_many(org: Probe) -> list[str]:
            hunts = []
            for _ in range(30):
                created = await org.request("create_hunt", name="load", clues=ANSWER_CLUES)
                hunts.append(created["hunt_id"])
                assert (await org.wait_event(hunts[-1], 1))["kind"] == "hunt_created"
            return hunts

        created = await asyncio.gather(*(create_many(o) for o in orgs))
        hunt = created[0][0]
        joins = await asyncio.gather(*(p.request("join_hunt", hunt_id=hunt) for p in players))
        assert sorted(j["seq"] for j in joins) == list(range(2, 14))
        assert (await orgs[0].request("end_hunt", hunt_id=hunt))["t"] == "ok"
        for p, joined in zip(players, joins, strict=True):
            await p.wait_event(hunt, 14)
            assert [s for s, _ in p.kinds(hunt)] == list(range(joined["seq"] + 1, 15)), p.name
    finally:
        await close_all(*orgs, *players)
