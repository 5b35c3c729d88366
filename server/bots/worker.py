"""The bots of one process: their scenarios, pacing and bookkeeping.

Roles (one per bot, from the scenario and the bot's global index):

- ``churn``: bots form a ring; each creates its own hunt once, then loops
  ``join_hunt``/``leave_hunt`` on its ring neighbour's hunt (an organizer may
  not join its own hunt), so every hunt is churned by exactly one bot and
  watched by its organizer. A ring of one gets a helper organizer.
- ``reconnect``: ``churn``, and every ``reconnect_every`` commands the bot
  aborts its connection, says ``hello`` with its token and ``resume``s every
  hunt it organizes or has joined after the last seq it saw.
- ``play``: groups of ``hunt_size`` bots; the first creates a hunt (answer and
  location clues), waits for the others to join, starts it and then reads it
  (``get_hunt``); the others answer clues, mostly wrong, some right, and check
  in near or far. When the hunt finishes, the organizer creates the next one.
- ``idle``: connect, ``hello``, then nothing until the end.
- ``listen``: join the one fan-out hunt (made by the parent's conductor) and
  receive its events until the end.
- ``mixed``: 40% play, 30% churn, 20% idle, 10% reconnect, by index.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from actors.runtime.tuning import tune_gc
from server.bots.botclient import BotClient
from server.bots.stats import Stats
from server.client import ReplyTimeout

SCENARIOS = ("churn", "play", "idle", "fanout", "reconnect", "mixed")
MIXED = ("play",) * 4 + ("churn",) * 3 + ("idle",) * 2 + ("reconnect",)


@dataclass(frozen=True)
class Spec:
    url: str
    scenario: str
    bots: int
    rate: float  # commands/s per bot; 0 = closed loop
    ramp_up_s: float
    duration_s: float
    hunt_size: int
    t0: float  # wall clock of the start
    reply_timeout_s: float = 15.0
    reconnect_every: int = 20
    p_right: float = 0.1
    seed: int = 1
    fanout_hunt: str = ""

    @property
    def window_start(self) -> float:
        return self.t0 + self.ramp_up_s


def role_of(scenario: str, index: int) -> str:
    if scenario == "mixed":
        return MIXED[index % len(MIXED)]
    return "listen" if scenario == "fanout" else scenario


def shares(spec: Spec, procs: int) -> list[tuple[int, int]]:
    """Contiguous index ranges, one per process; play groups never straddle two."""
    unit = spec.hunt_size if spec.scenario == "play" else 1
    units = -(-spec.bots // unit)
    out, start = [], 0
    for p in range(procs):
        n = units // procs + (1 if p < units % procs else 0)
        end = min(spec.bots, start + n * unit)
        out.append((start, end))
        start = end
    return [s for s in out if s[1] > s[0]]


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


# ---- shared state of the bots of one process ---------------------------------------


class Ctx:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.stats = Stats(spec.t0, spec.window_start)
        self.stop = asyncio.Event()
        self.bots: list[Bot] = []

    async def until(self, aw: Awaitable[Any], timeout_s: float | None = None) -> bool:
        """Wait for ``aw``; False when the run stops (or the timeout passes) first."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({task, stop}, timeout=timeout_s, return_when="FIRST_COMPLETED")
        for t in (task, stop):
            if not t.done():
                t.cancel()
        return task in done


class Ring:
    """Bot ``i`` of the ring churns the hunt of bot ``i + 1``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hunts: list[asyncio.Future[str]] = []

    def slot(self, pos: int) -> asyncio.Future[str]:
        while len(self.hunts) <= pos:
            self.hunts.append(asyncio.get_running_loop().create_future())
        return self.hunts[pos]


@dataclass
class ClueSpec:
    wire: dict[str, Any]
    kind: str


class Group:
    def __init__(self, size: int) -> None:
        self.size = size
        self.round = 0
        self.hunt = ""
        self.clues: list[ClueSpec] = []
        self.joined = 0
        self.all_joined = asyncio.Event()
        self.started = asyncio.Event()
        self.opened = asyncio.Event()

    def open(self, hunt: str, clues: list[ClueSpec]) -> None:
        self.round += 1
        self.hunt, self.clues, self.joined = hunt, clues, 0
        self.all_joined, self.started = asyncio.Event(), asyncio.Event()
        if self.size <= 1:
            self.all_joined.set()
        opened, self.opened = self.opened, asyncio.Event()
        opened.set()

    def player_joined(self) -> None:
        self.joined += 1
        if self.joined >= self.size - 1:
            self.all_joined.set()


def make_clues(rng: random.Random, answers: int = 10, places: int = 5) -> list[ClueSpec]:
    clues = []
    for k in range(answers):
        answer = f"answer {k} {rng.randrange(10**6)}"
        wire = {"text": f"riddle {k}", "answer": answer, "points": rng.randint(1, 100)}
        clues.append(ClueSpec(wire, "answer"))
    for k in range(places):
        lat, lon = rng.uniform(-60, 60), rng.uniform(-170, 170)
        wire = {"text": f"place {k}", "lat": lat, "lon": lon, "points": rng.randint(1, 100)}
        clues.append(ClueSpec(wire, "location"))
    return clues


# ---- one bot ---------------------------------------------------------------------------


class Bot:
    def __init__(self, ctx: Ctx, index: int, role: str) -> None:
        self.ctx, self.index, self.role = ctx, index, role
        spec = ctx.spec
        self.rng = random.Random(spec.seed * 1_000_003 + index)
        self.client = BotClient(
            spec.url,
            name=f"bot{index}",
            reply_timeout_s=spec.reply_timeout_s,
            event_sink=ctx.stats.event,
        )
        self.period = 1.0 / spec.rate if spec.rate > 0 else 0.0
        self.next_at = 0.0
        self.dead = False
        self.connected = False
        self.extra_violations: list[str] = []

    @property
    def running(self) -> bool:
        return not self.dead and not self.ctx.stop.is_set()

    def resync(self) -> None:
        """Restart the open-loop schedule after a wait that was not a command."""
        if self.period:
            self.next_at = time.perf_counter() + self.rng.uniform(0, self.period)

    async def cmd(self, t: str, *, paced: bool = True, **fields: Any) -> dict[str, Any] | None:
        """Send one command (on schedule when open loop), record its outcome."""
        stats = self.ctx.stats
        if paced and self.period:
            self.next_at += self.period
            while True:
                wait = self.next_at - time.perf_counter()
                if wait <= 0:
                    break
                await asyncio.sleep(min(wait, 0.5))
                if self.ctx.stop.is_set():
                    return None
            intended = self.next_at
        else:
            intended = time.perf_counter()
        try:
            reply = await self.client.request(t, **fields)
        except ReplyTimeout:
            stats.failure(t, "timeout")
            return None
        except (ConnectionError, ConnectionClosed):
            stats.failure(t, "connection_lost")
            self.dead = True
            return None
        elapsed = time.perf_counter() - intended
        code = "ok" if reply.get("t") != "error" else str(reply.get("code"))
        stats.command(t, time.time() - elapsed, elapsed, code)
        if code == "rate_limited" and not self.period:
            await asyncio.sleep(0.05)
        return reply

    async def live(self, role: Callable[[Bot], Awaitable[None]], start_at: float) -> None:
        stats = self.ctx.stats
        await self.ctx.until(asyncio.sleep(max(0.0, start_at - time.time())))
        if self.ctx.stop.is_set():
            return
        try:
            await self.client.connect(open_timeout=30)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            stats.errors[f"connect_failed:{type(exc).__name__}"] += 1
            return
        self.connected = True
        stats.connect()
        try:
            welcome = await self.cmd("hello", paced=False, **self._hello_fields())
            if welcome is not None and welcome.get("t") == "welcome":
                self.client.player_id = welcome["player_id"]
                self.client.token = welcome["token"]
                self.resync()
                await role(self)
            elif welcome is not None:
                stats.errors["hello_refused"] += 1
        finally:
            self.connected = False
            stats.disconnect()
            with contextlib.suppress(Exception):
                await self.client.close()

    def _hello_fields(self) -> dict[str, Any]:
        return {"protocol": 1, "name": self.client.name}


# ---- roles -----------------------------------------------------------------------------


async def idle(bot: Bot) -> None:
    await bot.ctx.stop.wait()


async def listen(bot: Bot) -> None:
    hunt = bot.ctx.spec.fanout_hunt
    reply = await bot.cmd("join_hunt", paced=False, hunt_id=hunt)
    if reply is not None:
        await bot.ctx.until(asyncio.Event().wait())


async def _own_hunt(bot: Bot, ring: Ring, pos: int) -> str | None:
    """Create this bot's hunt, publish it, return the neighbour's hunt to churn."""
    clue = {"text": "churn", "answer": "x", "points": 1}
    name = f"churn {bot.index}"
    if ring.size == 1:  # nobody else: a helper organizer makes the hunt
        return await _helper_hunt(bot, name, clue)
    reply = await bot.cmd("create_hunt", paced=False, name=name, clues=[clue])
    if reply is None or reply.get("t") != "ok":
        return None
    ring.slot(pos).set_result(reply["hunt_id"])
    target = ring.slot((pos + 1) % ring.size)
    if not await bot.ctx.until(asyncio.shield(target)):
        return None
    return target.result()


async def _helper_hunt(bot: Bot, name: str, clue: dict[str, Any]) -> str | None:
    helper = BotClient(bot.ctx.spec.url, name=f"helper{bot.index}")
    await helper.connect(open_timeout=30)
    try:
        await helper.hello()
        reply = await helper.request("create_hunt", name=name, clues=[clue])
        return str(reply["hunt_id"]) if reply.get("t") == "ok" else None
    finally:
        await helper.close()
        bot.extra_violations.extend(helper.violations)


def churner(reconnect: bool) -> Callable[[Ring, int], Callable[[Bot], Awaitable[None]]]:
    def bind(ring: Ring, pos: int) -> Callable[[Bot], Awaitable[None]]:
        async def churn(bot: Bot) -> None:
            hunt = await _own_hunt(bot, ring, pos)
            if hunt is None:
                return
            bot.resync()
            done = 0
            while bot.running:
                every = bot.ctx.spec.reconnect_every
                if reconnect and done and done % every == 0 and not await _reconnect(bot):
                    return
                t = "leave_hunt" if hunt in bot.client.joined else "join_hunt"
                if await bot.cmd(t, hunt_id=hunt) is None:
                    continue
                done += 1

        return churn

    return bind


async def _reconnect(bot: Bot) -> bool:
    client, stats = bot.client, bot.ctx.stats
    await client.drop(abort=True)
    stats.counts["reconnects"] += 1
    try:
        await client.connect(open_timeout=30)
    except (OSError, InvalidHandshake, TimeoutError):
        stats.errors["reconnect_failed"] += 1
        bot.dead = True
        return False
    reply = await bot.cmd("hello", paced=False, protocol=1, token=client.token)
    if reply is None or reply.get("t") != "welcome":
        client.violations.append(f"hello with token refused: {reply}")
        bot.dead = True
        return False
    for hunt, last in client.resume_points():
        await bot.cmd("resume", paced=False, hunt_id=hunt, after_seq=last)
    bot.resync()
    return True


def player(group: Group, organizer: bool) -> Callable[[Bot], Awaitable[None]]:
    async def organize(bot: Bot) -> None:
        client = bot.client
        while bot.running:
            clues = make_clues(bot.rng)
            reply = await bot.cmd(
                "create_hunt",
                paced=False,
                name=f"hunt of bot{bot.index}",
                clues=[c.wire for c in clues],
            )
            if reply is None or reply.get("t") != "ok":
                return
            hunt = reply["hunt_id"]
            group.open(hunt, clues)
            started = group.started
            await bot.ctx.until(group.all_joined.wait(), timeout_s=10.0)
            if not bot.running:
                return
            reply = await bot.cmd("start_hunt", paced=False, hunt_id=hunt)
            started.set()
            if reply is None:
                return
            bot.resync()
            while bot.running and hunt not in client.finished:
                await bot.cmd("get_hunt", hunt_id=hunt)

    async def play(bot: Bot) -> None:
        client, seen = bot.client, 0
        while bot.running:
            while group.round <= seen:
                if not await bot.ctx.until(group.opened.wait()):
                    return
            seen, hunt, clues, started = group.round, group.hunt, group.clues, group.started
            reply = await bot.cmd("join_hunt", paced=False, hunt_id=hunt)
            if reply is None:
                return
            if reply.get("t") == "ok":
                group.player_joined()
            if not await bot.ctx.until(started.wait()):
                return
            bot.resync()
            while bot.running and hunt not in client.finished:
                await _play_one(bot, hunt, clues)

    return organize if organizer else play


async def _play_one(bot: Bot, hunt: str, clues: list[ClueSpec]) -> None:
    solved = bot.client.solved.get(hunt, set())
    open_clues = [k for k in range(len(clues)) if k not in solved]
    if not open_clues:
        await bot.cmd("get_hunt", hunt_id=hunt)
        return
    k = bot.rng.choice(open_clues)
    clue, right = clues[k], bot.rng.random() < bot.ctx.spec.p_right
    stats = bot.ctx.stats
    if clue.kind == "answer":
        answer = f"  {clue.wire['answer'].upper()} " if right else f"wrong {bot.rng.randrange(99)}"
        reply = await bot.cmd("submit_answer", hunt_id=hunt, clue=k, answer=answer)
    else:
        lat, lon = clue.wire["lat"], clue.wire["lon"]
        if not right:
            lat = lat + 1.0 if lat < 0 else lat - 1.0
        reply = await bot.cmd("check_in", hunt_id=hunt, clue=k, lat=lat, lon=lon)
    if reply is not None and reply.get("t") == "ok":
        stats.counts["answers_right" if reply.get("correct") else "answers_wrong"] += 1
        if right and not reply.get("correct"):
            stats.counts["right_answers_rejected"] += 1


# ---- one process's share ----------------------------------------------------------------


def _roles(ctx: Ctx, lo: int, hi: int) -> list[tuple[Bot, Callable[[Bot], Awaitable[None]]]]:
    spec = ctx.spec
    by_role: dict[str, list[int]] = {}
    for i in range(lo, hi):
        by_role.setdefault(role_of(spec.scenario, i), []).append(i)
    out: list[tuple[Bot, Callable[[Bot], Awaitable[None]]]] = []
    for role, indexes in by_role.items():
        if role in ("churn", "reconnect"):
            ring = Ring(len(indexes))
            bind = churner(role == "reconnect")
            out += [(Bot(ctx, i, role), bind(ring, pos)) for pos, i in enumerate(indexes)]
        elif role == "play":
            k = max(1, spec.hunt_size)
            for g in range(0, len(indexes), k):
                members = indexes[g : g + k]
                group = Group(len(members))
                out += [(Bot(ctx, i, role), player(group, n == 0)) for n, i in enumerate(members)]
        else:
            out += [(Bot(ctx, i, role), idle if role == "idle" else listen) for i in indexes]
    out.sort(key=lambda pair: pair[0].index)
    return out


Progress = Callable[[dict[str, Any]], None]


def snapshot(ctx: Ctx) -> dict[str, Any]:
    bots = ctx.bots
    return {
        "connected": ctx.stats.connected,
        "sent": sum(b.client.sent for b in bots),
        "replies": sum(b.client.replies for b in bots),
        "errors": sum(ctx.stats.errors.values()),
        "violations": sum(len(b.client.violations) + len(b.extra_violations) for b in bots),
        "events": ctx.stats.counts["events"],
        "by_type": {k: h.encode() for k, h in ctx.stats.by_type.items()},
    }


async def run_share(
    spec: Spec,
    lo: int,
    hi: int,
    stop_requested: Callable[[], bool],
    progress: Progress,
    every_s: float = 1.0,
) -> dict[str, Any]:
    """Run bots ``lo..hi-1`` until ``stop_requested()``; the stats, for the parent."""
    ctx = Ctx(spec)
    pairs = _roles(ctx, lo, hi)
    ctx.bots = [b for b, _ in pairs]
    ramp = spec.ramp_up_s
    tasks = [
        asyncio.create_task(b.live(role, spec.t0 + ramp * (b.index / max(1, spec.bots))))
        for b, role in pairs
    ]
    last = 0.0
    tuned = False
    while not stop_requested():
        await asyncio.sleep(0.05)
        if not tuned and time.time() >= spec.t0 + ramp:
            tune_gc()  # after the ramp-up: the bots' own GC pauses would count as latency
            tuned = True
        if time.monotonic() - last >= every_s:
            last = time.monotonic()
            progress(snapshot(ctx))
    ctx.stats.window_end = time.time()
    ctx.stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats = ctx.stats
    for b in ctx.bots:
        found = b.client.violations + b.extra_violations
        stats.violations += len(found)
        room = 50 - len(stats.violation_samples)
        stats.violation_samples += [f"bot{b.index}: {v}" for v in found[: max(0, room)]]
        stats.counts["sent"] += b.client.sent
        stats.counts["replies"] += b.client.replies
    for t in tasks:
        exc = None if t.cancelled() else t.exception()
        if exc is not None:  # a reply the bot could not make sense of, or a bot bug
            stats.violations += 1
            stats.errors[f"bot_crashed:{type(exc).__name__}"] += 1
            if len(stats.violation_samples) < 50:
                stats.violation_samples.append(f"bot crashed: {exc!r}")
    return stats.to_wire()


def child_main(spec: Spec, lo: int, hi: int, stop: Any, queue: Any) -> None:
    """Entry of a bot process: runs its share, sends progress and the final stats."""
    raise_nofile()

    def progress(snap: dict[str, Any]) -> None:
        queue.put(("progress", lo, snap))

    wire = asyncio.run(run_share(spec, lo, hi, stop.is_set, progress))
    queue.put(("done", lo, wire))
