"""Faults under load (issue 7, parts 1 and 6), with 200 bots on real processes.

200 bots (8 organizers, 192 players of 8 hunts, 32 of whom join once play has
begun) answer right and wrong, check in and re-join while the server is hurt:

- a ShardHost is SIGKILLed, later every process of the server, and the server
  restarts on the same data (SQLite, and Cassandra on a fresh keyspace);
- SIGTERM drains the server: in-flight commands get their replies, every client
  is closed with 1001, nothing is left running; the server restarts.

Then every bot reconnects by token and resumes from the last seq it saw, and the
store, read directly, is held against the record of every reply: each command
answered ``ok`` is stored exactly once (``tests/support/store_audit.py``), streams are
contiguous, every client saw every event in order, scores equal the solves.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors.game.events import ClueSolved, HuntCreated, PlayerJoined
from actors.game.ids import hunt_stream
from actors.placement import shard_for
from actors.shard.entity import new_event
from persistence.base import AppendRequest, EventStore
from persistence.factory import StoreConfig, open_store
from persistence.sqlite import SqliteEventStore
from protocol.messages import HuntId, PlayerId
from server.client import GameClient, quick_client
from tests.e2e.test_crash import shard_pids, wait_recreated, wait_until
from tests.support.cassandra_node import CassandraNode, cassandra_node
from tests.support.play import Play, Sent, gather_bounded
from tests.support.server_harness import ServerProcess, stop_server
from tests.support.store_audit import Audit, audit, frame_of, scores

__all__ = ["cassandra_node"]  # the session fixture, imported so pytest finds it here

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

HUNTS, PLAYERS, LATE = 8, 20, 4  # 8 organizers + 8 * (20 + 4) players = 200 bots
REJOIN = 0.02  # chance per turn of a re-join
# the bots answer as fast as replies come: lift the per-player and per-connection rates
FAST = ["--answer-rate", "100000", "--rate-per-s", "100000", "--rate-burst", "100000"]


@dataclass
class Backend:
    name: str
    args: list[str]
    open_store: Callable[[], EventStore]


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def backend(request: pytest.FixtureRequest, data_dir: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", [], lambda: open_store(StoreConfig(data_dir=data_dir)))
    from persistence.cassandra import CassandraEventStore

    node: CassandraNode = request.getfixturevalue("cassandra_node")
    keyspace = f"faults_{uuid.uuid4().hex[:12]}"
    args = ["--store", "cassandra", "--cassandra-hosts", node.host, "--keyspace", keyspace]
    replication: dict[str, str | int] = {"class": "SimpleStrategy", "replication_factor": 1}
    return Backend(
        "cassandra", args, lambda: CassandraEventStore([node.host], keyspace, replication)
    )


def launch(servers: list[ServerProcess], data_dir: Path, backend: Backend) -> ServerProcess:
    srv = ServerProcess(data_dir, *FAST, *backend.args, shards=2)
    servers.append(srv)
    return srv.start()


@contextlib.asynccontextmanager
async def playing(play: Play) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(play.play(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def loaded_play(url: str) -> Play:
    play = Play(url, rejoin=REJOIN)
    await play.setup(hunts=HUNTS, players_per_hunt=PLAYERS, shards=2, late_per_hunt=LATE)
    assert len(play.clients) == 200
    return play


def errors(play: Play) -> set[str | None]:
    return {s.code for s in play.log if s.reply is not None and not s.ok}


def hunt_of(play: Play, name: str) -> str:
    if name in play.organizers:
        return play.hunts[play.organizers.index(name)]
    return play.hunt_of(name)


async def recover_and_check(play: Play, srv: ServerProcess, backend: Backend) -> dict[str, Any]:
    """Every bot reconnects by token, unknown outcomes are settled, every bot
    resumes from the last seq it saw; then the store is audited against the record."""
    play.url = srv.url
    await play.reconnect()
    await play.settle_unknown()
    back = time.monotonic()  # every bot is back and knows the fate of each command
    assert play.violations() == {}
    finals: dict[str, int] = {}
    views: dict[str, dict[str, Any]] = {}
    for hunt in play.hunts:
        got = await play.must(play.organizer_of(hunt), "get_hunt", hunt_id=hunt)
        assert got["hunt"]["status"] == "running"
        play.check_view(hunt, got["hunt"])  # scores = the sum of ok'd solves' points
        finals[hunt], views[hunt] = got["seq"], got["hunt"]
    old = {c.name: c for c in play.retired}  # the last connection of each bot before
    replayed = await gather_bounded(
        resume(old[n], c, hunt_of(play, n), finals[hunt_of(play, n)])
        for n, c in play.clients.items()
    )
    assert play.violations() == {}
    await play.close()
    stop_server(srv)
    assert srv.pids() == []

    store = backend.open_store()
    try:
        result = audit(play, store)
    finally:
        store.close()
    assert result.problems == [], "\n".join(result.problems)
    for hunt, events in result.streams.items():
        assert len(events) == finals[hunt]
        stored = {ev.seq: frame_of(hunt, ev) for ev in events}
        for seq, ev in play.received(hunt).items():  # all copies agree with each other ...
            assert ev == stored[seq], f"{hunt} seq {seq}: received {ev}, stored {stored[seq]}"
        board = {e["player_id"]: e["score"] for e in views[hunt]["players"]}  # ... and the store
        assert {p: s for p, s in board.items() if s} == scores(events)
    return {"audit": result, "resumed": sum(replayed), "back": back}


async def resume(old: GameClient, new: GameClient, hunt: str, final: int) -> int:
    """``new`` resumes after the last seq ``old`` saw: together they saw every
    event from ``old``'s first on, in order, once."""
    seen = [e["seq"] for e in old.hunts[hunt].events]
    last = old.hunts[hunt].last or 0
    before = len(new.hunts[hunt].events)
    reply = await new.request("resume", hunt_id=hunt, after_seq=last)
    assert reply["t"] == "ok" and reply["seq"] == final, f"{new.name}: {reply}"
    # live events of the settled commands may come first; the replay is the rest
    got = [e["seq"] for e in new.hunts[hunt].events[before:]]
    if last + 1 in got:
        got = got[len(got) - 1 - got[::-1].index(last + 1) :]
    assert got == list(range(last + 1, final + 1)), f"{new.name} resumed {got}"
    first = seen[0] if seen else last + 1
    assert seen + got == list(range(first, final + 1)), f"{new.name}: {seen} + {got}"
    return len(got)


def report(
    test: str, backend: Backend, play: Play, checked: dict[str, Any], **times: float
) -> None:
    a: Audit = checked["audit"]
    spans = " ".join(f"{k}={v:.2f}s" for k, v in times.items())
    print(
        f"\n[{test} / {backend.name}] bots={len(play.clients)} commands={len(play.log)}"
        f" acknowledged={a.acknowledged} events_checked={a.events} lost={a.lost}"
        f" duplicated={a.duplicated} resumed_events={checked['resumed']} {spans}"
    )


def answered_since(play: Play, mark: int) -> bool:
    """Every hunt has answered ``ok`` to a command sent after ``mark``."""
    hunts = {s.fields.get("hunt_id") for s in play.log[mark:] if s.ok}
    return hunts >= set(play.hunts)


async def test_crash_under_load_loses_and_doubles_nothing(
    servers: list[ServerProcess], data_dir: Path, backend: Backend
) -> None:
    srv = launch(servers, data_dir, backend)
    play = await loaded_play(srv.url)
    async with playing(play):
        await play.until_solves(1000, 30)
        victim, mark = min(shard_pids(srv)), len(play.log)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        await wait_recreated(srv, 1)
        await wait_until(lambda: answered_since(play, mark), 20, "every hunt to answer again")
        shard_recovery = time.monotonic() - killed
        await play.until_solves(play.solves() + 1000, 30)
        crashed = time.monotonic()
        await asyncio.to_thread(srv.kill_all)  # mid-play: commands are in flight
    assert srv.wait_gone() == []
    assert play.violations() == {}
    assert errors(play) <= {"unavailable"}, errors(play)

    srv = launch(servers, data_dir, backend)
    restarted = time.monotonic() - crashed
    checked = await recover_and_check(play, srv, backend)
    report(
        "crash under load",
        backend,
        play,
        checked,
        shard_recovery=shard_recovery,
        restart=restarted,
        recovered=checked["back"] - crashed,
    )


async def test_sigterm_under_load_drains_and_a_resumed_client_loses_nothing(
    servers: list[ServerProcess], data_dir: Path, backend: Backend
) -> None:
    srv = launch(servers, data_dir, backend)
    play = await loaded_play(srv.url)
    async with playing(play):
        await play.until_solves(1000, 30)
        in_flight = [s for s in play.log if s.reply is None]
        stopping = time.monotonic()
        code = await asyncio.to_thread(srv.terminate)
        drained = time.monotonic() - stopping
    assert code == 0, "\n".join(srv.lines[-20:])
    assert srv.wait_gone() == [] and srv.pids() == []
    srv.close_pipe()
    clients = list(play.clients.values())
    await wait_until(lambda: all(c.closed is not None for c in clients), 10, "clients closed")
    assert {c.name: c.closed[0] for c in clients if c.closed} == {c.name: 1001 for c in clients}
    # every command got exactly one reply (GameClient counts a second one as a
    # violation), or none because its connection was closed with 1001
    assert play.violations() == {}
    assert errors(play) <= {"unavailable"}, errors(play)
    cut = [s for s in play.log if s.reply is None]
    assert all((play.clients[s.who].closed or (0,))[0] == 1001 for s in cut)
    # what became of the commands in flight at SIGTERM: applied and answered, refused
    # unread (``unavailable``: nothing applied), or cut off by the 1001 close
    fates = Counter("ok" if s.ok else s.code or "cut" for s in in_flight)
    assert set(fates) <= {"ok", "unavailable", "cut"}, fates
    refused = sum(s.code == "unavailable" for s in play.log)
    acked = len(play.oks())

    srv = launch(servers, data_dir, backend)
    restarted = time.monotonic() - stopping
    checked = await recover_and_check(play, srv, backend)
    print(
        f"\n[sigterm drain / {backend.name}] in flight at SIGTERM={len(in_flight)}"
        f" -> ok={fates['ok']} unavailable={fates['unavailable']} cut={fates['cut']};"
        f" all commands cut by 1001={len(cut)} refused while draining={refused}"
        f" ok'd before the drain={acked} drain={drained:.2f}s"
    )
    report(
        "sigterm drain",
        backend,
        play,
        checked,
        drain=drained,
        restart=restarted,
        recovered=checked["back"] - stopping,
    )


def test_the_audit_finds_lost_and_duplicated_events(tmp_path: Path) -> None:
    """The checker itself: a missing solve is lost, a doubled one duplicated."""
    play = Play("ws://unused/")
    hunt, org, pid = "h1", "org0", "p-1"
    play.ids, play.organizers, play.hunts = {org: "o-1", "p0": pid}, [org], [hunt]
    play.members = {hunt: ["p0"]}
    ok = {"t": "ok"}
    solved = {"t": "ok", "correct": True, "points": 10, "score": 10}
    play.log = [
        Sent(org, "create_hunt", "c1", {}, {**ok, "hunt_id": hunt}),
        Sent("p0", "join_hunt", "j1", {"hunt_id": hunt}, ok),
        Sent("p0", "submit_answer", "s1", {"hunt_id": hunt, "clue": 0}, solved),
        Sent("p0", "submit_answer", "s2", {"hunt_id": hunt, "clue": 2}, solved),
    ]
    created = HuntCreated(1, HuntId(hunt), "h", PlayerId("o-1"), (), None, None)
    joined = PlayerJoined(2, PlayerId(pid), "p0")
    solve = ClueSolved(3, PlayerId(pid), 0, 10, 10)
    store = SqliteEventStore(tmp_path / "audit.sqlite3")
    try:
        events = [
            new_event(created, {"cmd": "c1", "player": "o-1"}),
            new_event(joined, {"cmd": "j1", "player": pid}),
            new_event(solve, {"cmd": "s1", "player": pid}),
            new_event(solve, {"cmd": "s1", "player": pid}),  # doubled; s2 is lost
        ]
        store.append_many([AppendRequest(hunt_stream(hunt), 0, events)])
        found = audit(play, store)
    finally:
        store.close()
    assert (found.acknowledged, found.events, found.lost, found.duplicated) == (4, 4, 1, 1)


async def test_a_join_whose_player_shard_dies_at_once_is_followed_after_hello(
    servers: list[ServerProcess], data_dir: Path
) -> None:
    """A join links the player to the hunt in the hunt's own commit, before its ok: the
    player's shard (another one) dying at once loses nothing, a new connection follows."""
    sqlite = Backend("sqlite", [], lambda: open_store(StoreConfig(data_dir=data_dir)))
    srv = launch(servers, data_dir, sqlite)
    play = Play(srv.url)
    await play.setup(hunts=1, players_per_hunt=1, shards=2)  # the hunt lives on shard 0
    hunt = play.hunts[0]
    late = await quick_client(srv.url, "late")
    while shard_for("player", late.player_id, 2) != 1:  # a player living on shard 1
        await late.close()
        late = await quick_client(srv.url, "late")
    joined = await late.request("join_hunt", hunt_id=hunt)
    assert joined["t"] == "ok" and joined["seq"] == 4
    os.kill(max(shard_pids(srv)), signal.SIGKILL)  # shards are created in index order
    await wait_recreated(srv, 1)
    org = play.clients["org0"]
    await late.close()
    again = GameClient(srv.url, name="late")
    await again.connect()
    assert (await again.hello(late.token))["t"] == "welcome"
    await play.must("org0", "end_hunt", hunt_id=hunt)
    try:
        assert (await org.wait_event(hunt, 5))["kind"] == "hunt_finished"
        # docs/protocol.md, hello: live events come (held up to 10 s for a resume that never comes)
        await again.wait_event(hunt, 5, within_s=20)
    finally:
        await again.close()
        await play.close()
        stop_server(srv)
    assert srv.pids() == []
