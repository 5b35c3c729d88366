"""A small scripted workload for fault-tolerance tests: organizers, players, hunts.

``Play`` drives several ``GameClient``s against a real server and records
every command it sent with the reply it got (or that it got none because the
connection died). The checks compare what the server holds afterwards with
that record: what was answered ``ok`` must be there, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed

from actors.game.ids import hunt_id_for
from actors.placement import shard_for
from server.client import GameClient, ReplyTimeout, quick_client

CLUE_COUNT = 6
RESERVED = CLUE_COUNT - 1  # never solved during play, so no hunt finishes by itself
STATE_CHANGING = {"create_hunt", "join_hunt", "start_hunt", "submit_answer", "check_in"}
STATE_CHANGING |= {"leave_hunt", "end_hunt"}
T = TypeVar("T")


def clue(i: int) -> dict[str, Any]:
    points = 10 + i
    if i % 2 == 0:
        return {"text": f"Say word {i}", "answer": f"Word {i}", "points": points}
    return {"text": f"Go to spot {i}", "lat": 48.0 + i / 100, "lon": 11.0, "points": points}


CLUES = [clue(i) for i in range(CLUE_COUNT)]


def solve_fields(index: int, right: bool) -> tuple[str, dict[str, Any]]:
    c = CLUES[index]
    if "answer" in c:
        return "submit_answer", {"clue": index, "answer": f"  word {index} " if right else "nope"}
    lat = c["lat"] + (0.00005 if right else 1.0)
    return "check_in", {"clue": index, "lat": lat, "lon": c["lon"]}


@dataclass
class Sent:
    """One command and its reply (``None``: no reply came, the outcome is unknown)."""

    who: str
    t: str
    cid: str
    fields: dict[str, Any]
    reply: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply.get("t") == "ok"

    @property
    def code(self) -> str | None:
        return None if self.reply is None else self.reply.get("code")


@dataclass
class Play:
    url: str
    seed: int = 7
    clients: dict[str, GameClient] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    organizers: list[str] = field(default_factory=list)
    hunts: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)  # hunt -> player names
    log: list[Sent] = field(default_factory=list)
    retired: list[GameClient] = field(default_factory=list)  # clients of a dead server
    counter: int = 0
    late: set[str] = field(default_factory=set)  # members who join once play has begun
    rejoin: float = 0.0  # chance per turn that a player sends join_hunt again (a re-join)

    # ---- commands -----------------------------------------------------------------

    async def command(self, who: str, t: str, cid: str | None = None, **fields: Any) -> Sent:
        c = self.clients[who]
        if cid is None:  # unique across this player's connections, unlike c.next_id()
            self.counter += 1
            cid = f"{who}-{self.counter}"
        sent = Sent(who, t, cid, fields)
        self.log.append(sent)
        with contextlib.suppress(ConnectionError, ConnectionClosed, ReplyTimeout):
            sent.reply = await c.request(t, sent.cid, **fields)
        return sent

    async def must(self, who: str, t: str, **fields: Any) -> dict[str, Any]:
        sent = await self.command(who, t, **fields)
        assert sent.ok, f"{who} {t} {fields}: {sent.reply}"
        assert sent.reply is not None
        return sent.reply

    # ---- set-up ------------------------------------------------------------------

    async def connect(self, names: list[str]) -> None:
        connected = await gather_bounded(quick_client(self.url, name) for name in names)
        for name, c in zip(names, connected, strict=True):
            self.clients[name], self.tokens[name], self.ids[name] = c, c.token, c.player_id

    async def setup(
        self,
        hunts: int = 2,
        players_per_hunt: int = 3,
        shards: int | None = None,
        late_per_hunt: int = 0,
    ) -> None:
        """Organizers create ``hunts`` hunts (on different shards when ``shards`` is
        given), players join them, the hunts start. ``late_per_hunt`` more members
        of each hunt are connected but join only when ``play`` begins."""
        orgs = [f"org{i}" for i in range(hunts)]
        size = players_per_hunt + late_per_hunt
        players = [f"p{i}" for i in range(hunts * size)]
        await self.connect(orgs + players)
        self.organizers = orgs
        for h, org in enumerate(orgs):
            cid = self._hunt_cid(org, h, shards)
            reply = await self.must(org, "create_hunt", cid=cid, name=f"Hunt {h}", clues=CLUES)
            hunt = reply["hunt_id"]
            self.hunts.append(hunt)
            self.members[hunt] = players[h * size : (h + 1) * size]
            self.late.update(self.members[hunt][players_per_hunt:])
            now = self.members[hunt][:players_per_hunt]
            await gather_bounded(self.must(p, "join_hunt", hunt_id=hunt) for p in now)
            await self.must(org, "start_hunt", hunt_id=hunt)

    def _hunt_cid(self, org: str, h: int, shards: int | None) -> str:
        for n in range(1000):
            cid = f"create-{h}-{n}"
            hunt = hunt_id_for(self.ids[org], cid)  # type: ignore[arg-type]
            if shards is None or shard_for("hunt", hunt, shards) == h % shards:
                return cid
        raise AssertionError("no command id puts the hunt on the wanted shard")

    def organizer_of(self, hunt: str) -> str:
        return self.organizers[self.hunts.index(hunt)]

    def hunt_of(self, player: str) -> str:
        return next(h for h, ps in self.members.items() if player in ps)

    # ---- play --------------------------------------------------------------------

    async def play(self, stop: asyncio.Event) -> None:
        """Every player answers (right and wrong) until ``stop`` or its connection dies."""
        players = [p for ps in self.members.values() for p in ps]
        await asyncio.gather(
            *(self._player(p, stop, random.Random(f"{self.seed}{p}")) for p in players)
        )

    async def _player(self, who: str, stop: asyncio.Event, rng: random.Random) -> None:
        hunt = self.hunt_of(who)
        if who in self.late:  # a member of the record: joins even if play stops at once
            while not (joined := await self.command(who, "join_hunt", hunt_id=hunt)).ok:
                if joined.reply is None:
                    return  # the connection is gone
                await asyncio.sleep(0)
        while not stop.is_set():
            if self.rejoin and rng.random() < self.rejoin:
                if (await self.command(who, "join_hunt", hunt_id=hunt)).reply is None:
                    return
                continue
            index = rng.randrange(RESERVED)
            t, fields = solve_fields(index, right=rng.random() < 0.6)
            sent = await self.command(who, t, hunt_id=hunt, **fields)
            if sent.reply is None:
                return  # the connection is gone
            await asyncio.sleep(0)  # let the other players' replies in

    def oks(self, pred: Callable[[Sent], bool] = lambda s: True) -> list[Sent]:
        return [s for s in self.log if s.ok and pred(s)]

    def solves(self) -> int:
        return len(self.oks(lambda s: s.t in ("submit_answer", "check_in")))

    async def until_solves(self, count: int, within_s: float) -> None:
        """Polls (with a deadline) until ``count`` answers and check-ins got ``ok``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self.solves() < count:
            assert loop.time() < deadline, f"only {self.solves()} of {count} answers in time"
            await asyncio.sleep(0.02)

    # ---- after a failure -------------------------------------------------------------

    async def reconnect(self) -> None:
        """New connections for everyone, by token: the same player each time."""
        old = dict(self.clients)
        self.retired.extend(old.values())

        async def again(name: str, c: GameClient) -> GameClient:
            await c.close()
            fresh = GameClient(self.url, name=name)
            await fresh.connect()
            welcome = await fresh.hello(self.tokens[name])
            assert welcome["t"] == "welcome", f"{name}: {welcome}"
            assert welcome["player_id"] == self.ids[name]
            return fresh

        fresh = await gather_bounded(again(name, c) for name, c in old.items())
        self.clients.update(zip(old, fresh, strict=True))

    async def settle_unknown(self, within_s: float = 30.0) -> None:
        """Resend (same id) every state-changing command whose outcome is unknown
        (no reply, or ``unavailable``) until it gets a definite reply."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        for sent in list(self.log):
            if sent.t not in STATE_CHANGING or (sent.reply is not None and not _retry(sent)):
                continue
            while True:
                again = await self.command(sent.who, sent.t, sent.cid, **sent.fields)
                if again.reply is not None and not _retry(again):
                    break
                assert loop.time() < deadline, f"{sent.t} {sent.cid} never settled"
            self.log.remove(again)
            sent.reply = again.reply

    # ---- what the record says ------------------------------------------------------------

    def expected(self, hunt: str) -> dict[str, tuple[int, list[int]]]:
        """player id -> (score, solved clues), from the ok'd commands."""
        solved: dict[str, set[int]] = {self.ids[p]: set() for p in self.members[hunt]}
        for s in self.oks(lambda s: s.fields.get("hunt_id") == hunt):
            if s.t in ("submit_answer", "check_in") and s.reply and s.reply["correct"]:
                solved[self.ids[s.who]].add(s.fields["clue"])
        return {
            p: (sum(CLUES[i]["points"] for i in clues), sorted(clues))
            for p, clues in solved.items()
        }

    def check_view(self, hunt: str, view: dict[str, Any]) -> None:
        got = {e["player_id"]: (e["score"], sorted(e["solved"])) for e in view["players"]}
        assert got == self.expected(hunt), f"hunt {hunt}: view {got} != record"
        assert view["organizer"] == self.ids[self.organizer_of(hunt)]
        names = {e["player_id"]: e["name"] for e in view["players"]}
        assert names == {self.ids[p]: p for p in self.members[hunt]}
        # every ok'd solve reply reported the score the player had right after it
        for s in self.oks(lambda s: s.fields.get("hunt_id") == hunt and "score" in (s.reply or {})):
            assert s.reply is not None and s.reply["score"] <= got[self.ids[s.who]][0]

    def received(self, hunt: str) -> dict[int, dict[str, Any]]:
        """Every event of ``hunt`` any client received, by seq (all copies must agree)."""
        by_seq: dict[int, dict[str, Any]] = {}
        for c in [*self.retired, *self.clients.values()]:
            for ev in c.hunts[hunt].events:
                first = by_seq.setdefault(ev["seq"], ev)
                assert first == ev, f"two versions of {hunt} seq {ev['seq']}: {first} / {ev}"
        return by_seq

    def violations(self) -> dict[str, list[str]]:
        everyone = [*self.retired, *self.clients.values()]
        return {c.name: c.violations for c in everyone if c.violations}

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()


async def gather_bounded(jobs: Iterable[Awaitable[T]], at_once: int = 50) -> list[T]:
    """Runs ``jobs`` concurrently, at most ``at_once`` at a time; results in order."""
    gate = asyncio.Semaphore(at_once)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


def _retry(sent: Sent) -> bool:
    return sent.reply is None or sent.code == "unavailable"


def comparable(reply: dict[str, Any]) -> dict[str, Any]:
    """A join's reply carries the hunt's current view and seq, the rest is fixed."""
    return {k: v for k, v in reply.items() if k not in ("hunt", "seq")}
