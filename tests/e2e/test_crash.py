"""Fault tolerance with real processes: SIGKILL, SIGTERM, a stale admin, a dead shard.

Each test starts its own server (``run_server.py`` in a subprocess), plays a
scripted game against it (``tests/support/play.py``) and checks, against the record
of every reply the clients got, that nothing answered ``ok`` was lost or
applied twice. Every test stops what it started and proves no process is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.game.events import ClueSolved
from actors.game.ids import hunt_stream
from actors.shard.entity import new_event
from persistence.base import AppendRequest
from persistence.factory import StoreConfig, open_store
from protocol.messages import PlayerId
from server.procs import alive, pids_listening_on
from tests.support.play import RESERVED, STATE_CHANGING, Play, comparable, solve_fields
from tests.support.server_harness import ServerProcess, shard_pids, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@contextlib.asynccontextmanager
async def playing(play: Play) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(play.play(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def launch(
    servers: list[ServerProcess], data_dir: Path, admin_port: int | None = None
) -> ServerProcess:
    # the workload answers as fast as replies come: lift the per-player answer rate
    srv = ServerProcess(data_dir, "--answer-rate", "10000", shards=2)
    if admin_port is not None:
        srv.admin_port = admin_port
    servers.append(srv)
    return srv.start()


async def wait_recreated(srv: ServerProcess, times: int) -> None:
    def done() -> bool:
        return sum("recreating it" in line for line in srv.lines) >= times

    await wait_until(done, 15, f"shard recreation {times}")


async def wait_until(cond: Any, within_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def check_resume(play: Play, hunt: str, seq: int) -> list[dict[str, Any]]:
    """The organizer resumes from 0: events 1..seq, in order, matching what clients saw."""
    org = play.clients[play.organizer_of(hunt)]
    before = len(org.hunts[hunt].events)
    reply = await org.request("resume", hunt_id=hunt, after_seq=0)
    assert reply["t"] == "ok" and reply["seq"] == seq
    replayed = org.hunts[hunt].events[before:]
    assert [e["seq"] for e in replayed] == list(range(1, seq + 1))
    for s, ev in play.received(hunt).items():
        assert ev == replayed[s - 1], (
            f"hunt {hunt} seq {s}: received {ev}, stored {replayed[s - 1]}"
        )
    return replayed


async def test_sigkill_of_every_process_loses_nothing_that_was_acknowledged(
    servers: list[ServerProcess], data_dir: Path
) -> None:
    srv = launch(servers, data_dir)
    play = Play(srv.url)
    await play.setup(hunts=2, players_per_hunt=3)
    async with playing(play):
        await play.until_solves(40, 30)
        await asyncio.to_thread(srv.kill_all)  # mid-play: commands are in flight
    assert srv.wait_gone() == []
    assert play.violations() == {}
    assert not [s for s in play.log if s.reply is not None and not s.ok], "errors before the crash"

    srv = launch(servers, data_dir)
    play.url = srv.url
    await play.reconnect()  # every token still works
    await play.settle_unknown()  # commands cut off by the crash: resend to learn their fate
    seqs = {}
    for hunt in play.hunts:
        got = await play.must(play.organizer_of(hunt), "get_hunt", hunt_id=hunt)
        play.check_view(hunt, got["hunt"])
        assert got["hunt"]["status"] == "running"
        seqs[hunt] = got["seq"]

    acknowledged = play.oks(lambda s: s.t in STATE_CHANGING)
    assert len(acknowledged) >= 40 + 2 + 2 + 6
    for sent in acknowledged:
        again = await play.command(sent.who, sent.t, sent.cid, **sent.fields)
        assert again.reply is not None and sent.reply is not None
        if sent.t == "join_hunt":
            assert comparable(again.reply) == comparable(sent.reply)
        else:
            assert again.reply == sent.reply, f"resent {sent.t} {sent.cid}"
    for hunt in play.hunts:
        got = await play.must(play.organizer_of(hunt), "get_hunt", hunt_id=hunt)
        assert got["seq"] == seqs[hunt], "a resent command made a new event"
        play.check_view(hunt, got["hunt"])
        await check_resume(play, hunt, seqs[hunt])

    # play goes on: a clue nobody could solve before is solved now, live
    hunt = play.hunts[0]
    player = play.members[hunt][0]
    t, fields = solve_fields(RESERVED, right=True)
    solved = await play.must(player, t, hunt_id=hunt, **fields)
    assert solved.get("correct") and solved["points"] == 10 + RESERVED, solved
    org = play.clients[play.organizer_of(hunt)]
    event = await org.wait_event(hunt, seqs[hunt] + 1)
    assert event["kind"] == "clue_solved" and event["data"]["clue"] == RESERVED
    assert play.violations() == {}
    await play.close()
    stop_server(srv)
    assert srv.pids() == []


async def test_sigterm_during_play_exits_cleanly_and_closes_clients_with_1001(
    servers: list[ServerProcess], data_dir: Path
) -> None:
    srv = launch(servers, data_dir)
    play = Play(srv.url)
    await play.setup(hunts=2, players_per_hunt=2)
    async with playing(play):
        await play.until_solves(20, 30)
        code = await asyncio.to_thread(srv.terminate)
    assert code == 0, "\n".join(srv.lines[-20:])
    assert srv.wait_gone() == []
    clients = list(play.clients.values())
    await wait_until(lambda: all(c.closed is not None for c in clients), 10, "clients closed")
    assert {c.name: c.closed[0] for c in clients if c.closed} == {c.name: 1001 for c in clients}
    codes = {s.code for s in play.log if s.reply is not None and not s.ok}
    assert codes <= {"unavailable"}, codes
    assert play.violations() == {}
    srv.close_pipe()


async def test_a_stale_admin_is_replaced_on_start(
    servers: list[ServerProcess], data_dir: Path
) -> None:
    first = launch(servers, data_dir)
    old = first.wait_for_pids(6)  # main, admin, logger, Director, two shards
    assert first.proc is not None
    first.proc.kill()  # only the main process: the admin and its actors live on
    first.proc.wait(10)
    assert pids_listening_on(first.admin_port), "the admin died with the main process"
    stale = [p for p in old if p != first.proc.pid]
    assert all(alive(p) for p in stale)

    second = launch(servers, data_dir, admin_port=first.admin_port)
    assert second.log_has("replacing it")
    await wait_until(lambda: not any(alive(p) for p in stale), 15, "the stale run to go")
    assert not set(second.pids()) & set(old)

    play = Play(second.url)
    await play.setup(hunts=1, players_per_hunt=2)
    hunt = play.hunts[0]
    t, fields = solve_fields(0, right=True)
    assert (await play.must("p0", t, hunt_id=hunt, **fields))["correct"]
    await play.clients["org0"].wait_event(hunt, 5)
    assert play.violations() == {}
    await play.close()
    stop_server(second)
    first.close_pipe()
    assert second.pids() == [] and not any(alive(p) for p in old)


async def test_a_killed_shard_is_recreated_and_no_event_is_lost_or_doubled(
    servers: list[ServerProcess], data_dir: Path
) -> None:
    srv = launch(servers, data_dir)
    play = Play(srv.url)
    await play.setup(hunts=2, players_per_hunt=3, shards=2)  # one hunt on each shard
    assert len(shard_pids(srv)) == 2
    killed: list[int] = []
    async with playing(play):
        await play.until_solves(30, 30)
        for n in range(1, 4):  # shard 0, shard 1, then the recreated shard 0
            victim = min(shard_pids(srv))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            at = play.solves()
            await wait_recreated(srv, n)
            await play.until_solves(at + 40, 30)
    assert len(shard_pids(srv)) == 2 and not set(shard_pids(srv)) & set(killed)

    codes = {s.code for s in play.log if s.reply is not None and not s.ok}
    assert codes <= {"unavailable"}, codes
    await play.settle_unknown()
    finals = {}
    for hunt in play.hunts:
        ended = await play.must(play.organizer_of(hunt), "end_hunt", hunt_id=hunt)
        assert ended["t"] == "ok"
        got = await play.must(play.organizer_of(hunt), "get_hunt", hunt_id=hunt)
        assert got["hunt"]["status"] == "finished"
        play.check_view(hunt, got["hunt"])
        finals[hunt] = got["seq"]

    # every live connection got every event, in order, without gap or duplicate
    def caught_up() -> bool:
        return all(
            play.clients[name].hunts[hunt].last == finals[hunt]
            for hunt in play.hunts
            for name in [play.organizer_of(hunt), *play.members[hunt]]
        )

    await wait_until(caught_up, 15, "every client to see the final event")
    assert play.violations() == {}
    for hunt in play.hunts:
        for name in [play.organizer_of(hunt), *play.members[hunt]]:
            seqs = [e["seq"] for e in play.clients[name].hunts[hunt].events]
            assert seqs == list(range(seqs[0], finals[hunt] + 1)), f"{name} on {hunt}"
        last = play.clients[play.organizer_of(hunt)].hunts[hunt].events[-1]
        board = {e["player_id"]: e["score"] for e in last["data"]["leaderboard"]}
        assert board == {p: score for p, (score, _) in play.expected(hunt).items()}
    await play.reconnect()
    for hunt in play.hunts:
        await check_resume(play, hunt, finals[hunt])
    await play.close()
    stop_server(srv)
    assert srv.pids() == []


async def test_a_command_in_flight_when_both_shards_die_is_resent_applied_and_published(
    servers: list[ServerProcess], data_dir: Path
) -> None:
    """Both shards die together (both must be recreated) while a solve waits in
    flight: the gateway resends it, it is applied once, and its event goes out."""
    srv = launch(servers, data_dir)
    play = Play(srv.url)
    await play.setup(hunts=1, players_per_hunt=1)
    hunt, org = play.hunts[0], play.clients["org0"]
    shards = shard_pids(srv)
    for pid in shards:  # the solve below reaches the gateway but no shard takes it
        os.kill(pid, signal.SIGSTOP)
    t, fields = solve_fields(0, right=True)
    solving = asyncio.create_task(play.command("p0", t, hunt_id=hunt, **fields))
    await play.must("p0", "ping")  # frames are handled in order: the solve is in flight
    for pid in shards:
        os.kill(pid, signal.SIGKILL)
    await wait_recreated(srv, 2)
    solved = await asyncio.wait_for(solving, 20)
    assert solved.reply is not None and solved.reply.get("correct"), solved.reply
    assert srv.log_has("requests to shard")  # resent on the new channel
    event = await org.wait_event(hunt, 4, within_s=5)
    assert event["kind"] == "clue_solved"
    again = await play.command("p0", t, solved.cid, hunt_id=hunt, **fields)
    assert again.reply == solved.reply
    got = await play.must("org0", "get_hunt", hunt_id=hunt)
    assert got["seq"] == 4 and got["hunt"]["players"][0]["score"] == 10
    assert play.violations() == {}
    await play.close()
    stop_server(srv)
    assert srv.pids() == []


async def test_events_a_dead_shard_stored_but_never_published_reach_live_subscribers(
    servers: list[ServerProcess], data_dir: Path
) -> None:
    """A shard killed between its append and its publish: the recreated shard has
    the event in the store, the live connections never got it. They must."""
    srv = launch(servers, data_dir)
    play = Play(srv.url)
    await play.setup(hunts=1, players_per_hunt=1)
    hunt, org, p0 = play.hunts[0], play.clients["org0"], play.ids["p0"]
    await org.wait_event(hunt, 3)  # created, joined, started
    shards = shard_pids(srv)
    for pid in shards:
        os.kill(pid, signal.SIGSTOP)
    store = open_store(StoreConfig(data_dir=data_dir))  # the append the shard made
    try:
        solved = ClueSolved(int(time.time() * 1000), PlayerId(p0), 0, 10, 10)
        meta = {"cmd": "lost-1", "player": p0}
        outcome = store.append_many(
            [AppendRequest(hunt_stream(hunt), 3, [new_event(solved, meta)])]
        )
        assert not isinstance(outcome[0], Exception), outcome
    finally:
        store.close()
    for pid in shards:  # ... before it could publish
        os.kill(pid, signal.SIGKILL)
    await wait_recreated(srv, 2)
    for client in (org, play.clients["p0"]):
        event = await client.wait_event(hunt, 4, within_s=10)
        assert event["kind"] == "clue_solved" and event["data"]["player_id"] == p0
    t, fields = solve_fields(1, right=True)
    assert (await play.must("p0", t, hunt_id=hunt, **fields))["score"] == 10 + 11
    assert (await org.wait_event(hunt, 5))["kind"] == "clue_solved"
    assert play.violations() == {}
    await play.close()
    stop_server(srv)
    assert srv.pids() == []
