"""The admin's questions and actions, answered by the Director and the ShardHosts.

Everything the admin learns of an actor comes from an ``Inspect`` it answers
over Thespian. The asks run in a few threads of their own, each with its own
private actor-system context (contexts must never be shared across threads);
the event loop awaits them as futures.

Errors (``AdminError``) carry the HTTP status the endpoint answers with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from actors.game.ids import EntityKind
from actors.messages import Action, AdminAction, AdminReply, Inspect
from actors.placement import shard_for

log = logging.getLogger("treasure.admin")
ASK_TIMEOUT_S = 3.0
_refs = itertools.count(1)
Job = tuple[Callable[[Any], Any], concurrent.futures.Future[Any]]


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Asker:
    """A small pool of threads, each asking through its own private context."""

    def __init__(self, asys: Any, threads: int = 2) -> None:
        self.asys = asys
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"admin-ask-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(ASK_TIMEOUT_S + 2)

    def run(self, job: Callable[[Any], Any]) -> asyncio.Future[Any]:
        """Run ``job(ctx)`` in an asking thread; its result as an awaitable."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((job, fut))
        return asyncio.wrap_future(fut)

    def _work(self) -> None:
        with self.asys.private() as ctx:
            while True:
                item = self._jobs.get()
                if item is None:
                    return
                job, fut = item
                try:
                    fut.set_result(job(ctx))
                except BaseException as exc:
                    fut.set_exception(exc)


def ask(ctx: Any, target: Any, what: str, who: str, **args: Any) -> Any:
    """One ``Inspect`` and its data; ``AdminError`` 503 when nobody answers."""
    return request(ctx, target, Inspect(what, args), who)


def request(ctx: Any, target: Any, msg: Inspect | AdminAction, who: str) -> Any:
    """Sends ``msg`` with a fresh ``ref`` and returns its ``AdminReply``'s data."""
    ref = msg.ref = next(_refs)
    deadline = time.monotonic() + ASK_TIMEOUT_S
    try:
        reply = ctx.ask(target, msg, ASK_TIMEOUT_S)
        while isinstance(reply, AdminReply) and reply.ref != ref:  # a late answer: skip it
            reply = ctx.listen(max(0.01, deadline - time.monotonic()))
    except Exception as exc:
        raise AdminError(503, f"{who} cannot be reached: {exc}") from exc
    if reply is None:
        raise AdminError(
            503, f"{who} did not answer within {ASK_TIMEOUT_S:g} s (dead or restarting?)"
        )
    if not isinstance(reply, AdminReply):
        raise AdminError(503, f"{who} did not answer (got {type(reply).__name__})")
    if not reply.ok:
        raise AdminError(500, f"{who} failed: {reply.error}")
    return reply.data


def kind_of(entity_id: str) -> EntityKind:
    if entity_id.startswith("h") and len(entity_id) > 1:
        return EntityKind.HUNT
    if entity_id.startswith("p") and len(entity_id) > 1:
        return EntityKind.PLAYER
    raise AdminError(404, f"unknown id {entity_id!r}: hunt ids start with h, player ids with p")


class AdminQueries:
    def __init__(self, asker: Asker, director: Any, gateway: Any) -> None:
        self.asker, self.director, self.gateway = asker, director, gateway

    # ---- the actor system -------------------------------------------------------

    async def shards(self) -> dict[str, Any]:
        in_flight = self._in_flight()
        director = self.director

        def job(ctx: Any) -> dict[str, Any]:
            facts = ask(ctx, director, "director", "the director")
            addresses = ask(ctx, director, "shards", "the director")
            rows = []
            for index, address in enumerate(addresses):
                try:
                    row = ask(ctx, address, "shard", f"shard {index}")
                    row["up"] = True
                except AdminError as exc:
                    pid = facts["shard_pids"][index] if index < len(facts["shard_pids"]) else 0
                    row = {"index": index, "pid": pid, "up": False, "error": exc.message}
                row["in_flight"] = in_flight.get(index, 0)
                rows.append(row)
            return {"director": facts, "shards": rows}

        data: dict[str, Any] = await self.asker.run(job)
        data["gateway"] = self.gateway_facts()
        return data

    def gateway_facts(self) -> dict[str, Any]:
        gw = self.gateway
        return {
            "id": gw.bridge.gateway_id,
            "connections": len(gw.connections),
            "players_online": len(gw.sessions.by_player),
            "in_flight": gw.bridge.in_flight(),
            "batches_sent": gw.bridge.batches_sent,
            "channels_up": gw.bridge.linked(),
            "lobby": gw.lobby(),
            "accepted": gw.accepted(),
            "accept_queue": gw.accept_queue(),
        }

    def _in_flight(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for _, index, _ in list(self.gateway.bridge._pending.values()):
            counts[index] = counts.get(index, 0) + 1
        return counts

    async def actors(
        self, kind: str | None = None, shard: int | None = None, sort: str = "msgs", limit: int = 0
    ) -> list[dict[str, Any]]:
        targets = list(enumerate(self.gateway.bridge.shards))
        if shard is not None:
            if not 0 <= shard < len(targets):
                raise AdminError(404, f"no shard {shard}: there are {len(targets)} (0-based)")
            targets = [targets[shard]]

        def job(ctx: Any) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            for index, address in targets:
                rows.extend(ask(ctx, address, "entities", f"shard {index}", kind=kind))
            return rows

        rows: list[dict[str, Any]] = await self.asker.run(job)
        keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "msgs": lambda r: -r["messages"],
            "last": lambda r: -r["last_active"],
            "id": lambda r: r["id"],
            "version": lambda r: -r["version"],
        }
        if sort not in keys:
            raise AdminError(400, f"sort: one of {', '.join(keys)}")
        rows.sort(key=keys[sort])
        return rows[:limit] if limit > 0 else rows

    async def hunts(self) -> list[dict[str, Any]]:
        rows = await self.actors(EntityKind.HUNT, sort="last")
        local = self.gateway.hub.subscribers
        for row in rows:
            row["watching_here"] = len(local.get(row["id"], ()))
        return rows

    # ---- one entity -------------------------------------------------------------

    def _where(self, entity_id: str) -> tuple[EntityKind, int, Any]:
        kind = kind_of(entity_id)
        shards = self.gateway.bridge.shards
        index = shard_for(kind, entity_id, len(shards))
        return kind, index, shards[index]

    async def _on_shard(self, entity_id: str, what: str, **args: Any) -> Any:
        kind, index, address = self._where(entity_id)

        def job(ctx: Any) -> Any:
            return ask(ctx, address, what, f"shard {index}", kind=kind, id=entity_id, **args)

        return await self.asker.run(job)

    async def _act(self, entity_id: str, action: Action) -> Any:
        kind, index, address = self._where(entity_id)

        def job(ctx: Any) -> Any:
            return request(ctx, address, AdminAction(action, kind, entity_id), f"shard {index}")

        return await self.asker.run(job)

    async def inspect(self, entity_id: str, activate: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = await self._on_shard(entity_id, "entity", activate=activate)
        if data.get("found") is False:
            raise AdminError(404, f"unknown id {entity_id!r}: no such {kind_of(entity_id)}")
        data["id"] = entity_id
        data["in_flight_here"] = sum(
            1
            for _, _, req in list(self.gateway.bridge._pending.values())
            if req.entity == entity_id
        )
        if kind_of(entity_id) is EntityKind.HUNT:
            conns = self.gateway.hub.subscribers.get(entity_id, ())
            data["watchers_here"] = sorted({c.player_id for c in conns})
        else:
            data["connections_here"] = len(self.gateway.sessions.by_player.get(entity_id, ()))
        return data

    async def events(self, entity_id: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        data: dict[str, Any] = await self._on_shard(entity_id, "events", after=after, limit=limit)
        if not data["events"] and after == 0:
            raise AdminError(404, f"unknown id {entity_id!r}: no stored events")
        return data

    # ---- actions ------------------------------------------------------------------

    async def passivate(self, entity_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._act(entity_id, "passivate")
        return result

    async def snapshot(self, entity_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._act(entity_id, "snapshot")
        if data.get("found") is False:
            raise AdminError(404, f"unknown id {entity_id!r}: no such {kind_of(entity_id)}")
        return data

    async def end_hunt(self, hunt_id: str) -> dict[str, Any]:
        if kind_of(hunt_id) is not EntityKind.HUNT:
            raise AdminError(400, f"{hunt_id!r} is not a hunt id")
        reply: dict[str, Any] = await self._act(hunt_id, "end_hunt")
        if reply.get("code") == "not_found":
            raise AdminError(404, f"unknown id {hunt_id!r}: no such hunt")
        if reply.get("t") != "ok":
            raise AdminError(409, f"cannot end {hunt_id}: {reply.get('message')}")
        return reply

    def kick(self, player: str, reason: str) -> dict[str, Any]:
        if kind_of(player) is not EntityKind.PLAYER:
            raise AdminError(400, f"{player!r} is not a player id")
        closed = self.gateway.kick(player, reason)
        if closed == 0:
            raise AdminError(404, f"player {player} has no open connection here")
        return {"player": player, "closed": closed, "reason": reason}
