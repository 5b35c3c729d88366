"""ShardCore against a real SQLite file: group commit, failures, timers, passivation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from actors.game.ids import hunt_id_for
from actors.game.player import Register
from actors.messages import Request, Resumed, Subscribe
from actors.shard.core import Output, ShardCore
from actors.shard.timers import running_timers
from persistence.errors import StoreUnavailable
from persistence.sqlite import SqliteEventStore
from protocol.messages import (
    AnswerClue,
    CommandId,
    CreateHunt,
    GetHunt,
    HuntId,
    JoinHunt,
    LeaveHunt,
    Resume,
    StartHunt,
    SubmitAnswer,
)

ORG = "porg"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.sqlite3"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(path: Path, clock: Clock) -> Iterator[ShardCore]:
    c = ShardCore(0, 1, SqliteEventStore(path, busy_timeout_s=0.05), clock=clock, snapshot_every=5)
    yield c
    c.store.close()


def create(cid: str = "c1", duration_s: int | None = None) -> tuple[HuntId, Request]:
    hunt = hunt_id_for(ORG, CommandId(cid))  # type: ignore[arg-type]
    cmd = CreateHunt(CommandId(cid), "Hunt", (AnswerClue("q", "Berlin", 10),), duration_s)
    return hunt, Request(1, "hunt", hunt, cmd, ORG, "Org")


def replies(out: Output) -> list[dict[str, Any]]:
    return [msg for _, msg in out.replies["gw"]]


def kinds(out: Output) -> list[tuple[int, str]]:
    return [(seq, msgpack.unpackb(f)["kind"]) for _, seq, f in out.events["gw"]]


def play(core: ShardCore, *reqs: Request) -> Output:
    return core.handle("gw", list(reqs))


def test_a_batch_is_committed_once_and_answered_after(core: ShardCore, path: Path) -> None:
    hunt, req = create()
    out = play(
        core,
        Request(0, "hunt", hunt, Subscribe()),
        req,
        Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann"),
        Request(3, "hunt", hunt, StartHunt(CommandId("s"), hunt), ORG, "Org"),
    )
    assert [r["t"] for r in replies(out)] == ["ok", "ok", "ok", "ok"]
    assert kinds(out) == [(1, "hunt_created"), (2, "player_joined"), (3, "hunt_started")]
    assert core.stats.batches == 1 and core.stats.events_appended == 3
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM events").fetchone()
    assert rows[0] == 3


def test_a_failed_append_answers_unavailable_and_keeps_nothing(core: ShardCore, path: Path) -> None:
    hunt, req = create()
    play(core, req)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the store cannot write past its busy timeout
    out = play(core, Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann"))
    assert replies(out) == [
        {"t": "error", "code": "unavailable", "message": "cannot store events now"}
    ]
    assert core.stats.store_errors >= 1
    blocker.execute("ROLLBACK")
    out = play(core, Request(3, "hunt", hunt, GetHunt(CommandId("g"), hunt), "p1", "Ann"))
    assert replies(out)[0]["hunt"]["players"] == []  # the failed join left nothing in memory
    out = play(core, Request(4, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann"))
    assert replies(out)[0]["seq"] == 2  # resending the same id now applies it


def test_state_and_idempotency_survive_a_new_core(
    core: ShardCore, path: Path, clock: Clock
) -> None:
    hunt, req = create()
    play(core, req, Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann"))
    play(core, Request(3, "hunt", hunt, StartHunt(CommandId("s"), hunt), ORG, "Org"))
    answer = SubmitAnswer(CommandId("a"), hunt, 0, "nope")
    first = replies(play(core, Request(4, "hunt", hunt, answer, "p1", "Ann")))[0]
    fresh = ShardCore(0, 1, SqliteEventStore(path), clock=clock)
    again = replies(fresh.handle("gw", [Request(5, "hunt", hunt, answer, "p1", "Ann")]))[0]
    assert again == first == {"t": "ok", "correct": False, "points": 0, "score": 0}
    fresh.store.close()


def test_snapshots_are_taken_every_n_events_and_used_on_activation(
    core: ShardCore, path: Path, clock: Clock
) -> None:
    hunt, req = create()
    play(core, req)
    for i in range(6):
        join = JoinHunt(CommandId(f"j{i}"), hunt)
        play(core, Request(10 + i, "hunt", hunt, join, f"p{i}", f"P{i}"))
    snap = core.store.load_snapshot(f"hunt-{hunt}")
    assert snap is not None and snap.seq >= 5
    fresh = ShardCore(0, 1, SqliteEventStore(path), clock=clock)
    view = replies(fresh.handle("gw", [Request(1, "hunt", hunt, GetHunt(CommandId("g"), hunt))]))
    assert len(view[0]["hunt"]["players"]) == 6 and view[0]["seq"] == 7
    fresh.store.close()


def test_idle_entities_are_passivated_and_come_back(core: ShardCore, clock: Clock) -> None:
    core.passivate_after_s = 60
    hunt, req = create()
    play(core, req)
    assert ("hunt", hunt) in core.entities
    clock.now += 61
    core.tick()
    assert ("hunt", hunt) not in core.entities and core.stats.passivations == 1
    out = play(core, Request(2, "hunt", hunt, GetHunt(CommandId("g"), hunt)))
    assert replies(out)[0]["hunt"]["name"] == "Hunt"


def test_a_timed_hunt_finishes_on_tick_and_at_start_after_downtime(
    core: ShardCore, path: Path, clock: Clock
) -> None:
    hunt, req = create("c1", duration_s=10)
    play(core, Request(0, "hunt", hunt, Subscribe()), req)
    play(core, Request(2, "hunt", hunt, StartHunt(CommandId("s"), hunt), ORG, "Org"))
    assert running_timers(core.store) == {hunt: int(clock.now * 1000) + 10_000}
    clock.now += 9
    assert kinds(core.tick()) == []
    clock.now += 1
    assert kinds(core.tick()) == [(3, "hunt_finished")]
    assert running_timers(core.store) == {}

    other, req2 = create("c2", duration_s=10)
    play(core, req2, Request(3, "hunt", other, StartHunt(CommandId("s2"), other), ORG, "Org"))
    clock.now += 60  # the server is down past the end
    restarted = ShardCore(0, 1, SqliteEventStore(path), clock=clock)
    restarted.start()
    state = restarted.entities[("hunt", other)].state
    assert state is not None and state.phase == "finished"  # type: ignore[union-attr]
    restarted.store.close()


def test_resume_serves_recent_events_from_memory_and_older_from_the_store(
    core: ShardCore, path: Path, clock: Clock
) -> None:
    hunt, req = create()
    play(core, req)
    for i in range(3):
        play(core, Request(i, "hunt", hunt, JoinHunt(CommandId(f"j{i}"), hunt), f"p{i}", "P"))
    resume = Resume(CommandId("r"), hunt, 1)
    fresh = ShardCore(0, 1, SqliteEventStore(path), clock=clock)
    fresh.entities.clear()
    for c in (core, fresh):
        msg = replies(c.handle("gw", [Request(9, "hunt", hunt, resume, "p0", "P")]))[0]
        assert isinstance(msg, Resumed)
        seqs = [msgpack.unpackb(f)["seq"] for f in msg.frames]
        assert (msg.seq, seqs) == (4, [2, 3, 4])
    fresh.store.close()
    refused = replies(play(core, Request(9, "hunt", hunt, resume, "stranger", "S")))[0]
    assert refused["code"] == "forbidden"


def test_a_resent_join_gets_the_first_reply_after_the_hunt_moved_on(
    core: ShardCore, path: Path, clock: Clock
) -> None:
    hunt, req = create()
    play(core, req)
    join = Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann")
    first = replies(play(core, join))[0]
    play(core, Request(3, "hunt", hunt, JoinHunt(CommandId("k"), hunt), "p2", "Bob"))
    play(core, Request(4, "hunt", hunt, StartHunt(CommandId("s"), hunt), ORG, "Org"))
    assert replies(play(core, join))[0] == first
    fresh = ShardCore(0, 1, SqliteEventStore(path), clock=clock)
    assert replies(fresh.handle("gw", [join]))[0] == first
    assert first["seq"] == 2 and [p["name"] for p in first["hunt"]["players"]] == ["Ann"]
    again = Request(5, "hunt", hunt, JoinHunt(CommandId("j2"), hunt), "p1", "Ann")
    now = replies(fresh.handle("gw", [again]))[0]  # a new id: today's view
    assert now["seq"] == 4 and now["hunt"]["status"] == "running"
    fresh.store.close()


def hello(core: ShardCore, player: str, token_hash: str = "th") -> dict[str, Any]:
    return replies(play(core, Request(9, "player", player, Register("x", token_hash), player)))[0]


def test_a_welcome_lists_the_hunts_the_players_commands_linked(core: ShardCore) -> None:
    hunt, req = create()
    other, req2 = create("c2")
    join = Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann")
    play(core, req, req2, join)
    assert hello(core, ORG)["hunts"] == sorted([hunt, other])
    assert hello(core, "p1")["hunts"] == [hunt]
    leave = Request(3, "hunt", hunt, LeaveHunt(CommandId("l"), hunt), "p1", "Ann")
    assert replies(play(core, leave))[0]["t"] == "ok"
    assert hello(core, "p1")["hunts"] == []
    refused = Request(4, "hunt", other, LeaveHunt(CommandId("l2"), other), "p1", "Ann")
    assert replies(play(core, refused))[0]["code"] == "forbidden"
    assert hello(core, "p1")["hunts"] == []


def test_a_resent_join_writes_its_link_again(core: ShardCore, path: Path) -> None:
    # On Cassandra a link is written after its events and may fail alone: the client
    # got unavailable and resends, the hunt answers from memory and links again.
    hunt, req = create()
    join = Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann")
    play(core, req, join)
    sqlite3.connect(path, isolation_level=None).execute("DELETE FROM links WHERE owner='player-p1'")
    assert hello(core, "p1")["hunts"] == []
    assert replies(play(core, join))[0]["seq"] == 2
    assert hello(core, "p1")["hunts"] == [hunt]


def test_a_resend_whose_link_cannot_be_written_is_unavailable(core: ShardCore, path: Path) -> None:
    hunt, req = create()
    join = Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1", "Ann")
    play(core, req, join)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    assert replies(play(core, join))[0]["code"] == "unavailable"
    blocker.execute("ROLLBACK")
    assert replies(play(core, join))[0]["t"] == "ok"


class SyncingStore(SqliteEventStore):
    """Records when the shard appends and syncs; its sync can be made to fail."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, defer_sync=True)
        self.calls: list[str] = []
        self.fail_sync = False

    def append_many(self, requests: Any) -> Any:
        self.calls.append("append")
        return super().append_many(requests)

    def sync(self) -> None:
        self.calls.append("sync")
        if self.fail_sync:
            raise StoreUnavailable("EIO")
        super().sync()


def test_a_batch_is_synced_before_its_replies_are_given(path: Path, clock: Clock) -> None:
    store = SyncingStore(path)
    failures: list[Exception] = []
    core = ShardCore(0, 1, store, clock=clock, on_sync_failure=failures.append)
    try:
        hunt, req = create()
        out = core.handle("gw", [req])
        assert replies(out) == [{"t": "ok", "hunt_id": hunt}]
        assert store.calls == ["append", "sync"]
        store.fail_sync = True
        with pytest.raises(StoreUnavailable):
            core.handle("gw", [Request(2, "hunt", hunt, JoinHunt(CommandId("j"), hunt), "p1")])
        assert [str(f) for f in failures] == ["EIO"]  # the host's hook ends the shard
    finally:
        store.close()
