"""A bare websockets + msgpack server: the physical limit the real server is compared with.

    python -m server.bots.baseline [--host 127.0.0.1] [--port 8799]

It speaks the same protocol (same replies, same events with the same seq
rules) so the bots run against it unchanged, but without actors, without
storage, without validation beyond what it needs to answer: plain dicts in one
process. Every event frame is encoded once and written to its subscribers with
``websockets.broadcast``. It prints ``baseline ready at ws://HOST:PORT/`` on
stderr when it listens, and stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import signal
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed


def now_ms() -> int:
    return int(time.time() * 1000)


def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(min(1.0, a)))


@dataclass
class Member:
    name: str
    score: int = 0
    solved: list[int] = field(default_factory=list)


@dataclass
class Hunt:
    hunt_id: str
    name: str
    organizer: str
    clues: list[dict[str, Any]]
    created_at: int
    status: str = "lobby"
    started_at: int | None = None
    frames: list[bytes] = field(default_factory=list)  # frames[i] is seq i + 1
    members: dict[str, Member] = field(default_factory=dict)
    subscribers: set[ServerConnection] = field(default_factory=set)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        seq = len(self.frames) + 1
        ev = {"t": "event", "hunt_id": self.hunt_id, "seq": seq, "kind": kind}
        frame = msgpack.packb({**ev, "at": now_ms(), "data": data})
        self.frames.append(frame)
        broadcast(self.subscribers, frame)

    def leaderboard(self) -> list[dict[str, Any]]:
        entries = [
            {"player_id": p, "name": m.name, "score": m.score, "solved": list(m.solved)}
            for p, m in self.members.items()
        ]
        return sorted(entries, key=lambda e: -e["score"])

    def view(self) -> dict[str, Any]:
        lobby = self.status == "lobby"
        clues = [
            {
                "index": i,
                "kind": "answer" if "answer" in c else "location",
                "points": c["points"],
                "text": None if lobby else c["text"],
            }
            for i, c in enumerate(self.clues)
        ]
        return {
            "hunt_id": self.hunt_id,
            "name": self.name,
            "organizer": self.organizer,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ends_at": None,
            "clues": clues,
            "players": self.leaderboard(),
            "max_players": None,
        }


class Baseline:
    def __init__(self) -> None:
        self.hunts: dict[str, Hunt] = {}
        self.players: dict[str, str] = {}  # token -> player id
        self.names: dict[str, str] = {}
        self.ids = itertools.count(1)

    async def handle(self, ws: ServerConnection) -> None:
        player: list[str] = []  # [player id] once hello succeeded
        try:
            async for frame in ws:
                await ws.send(msgpack.packb(self.reply(ws, player, frame)))
        except ConnectionClosed:
            pass
        finally:
            for hunt in self.hunts.values():
                hunt.subscribers.discard(ws)

    def reply(self, ws: ServerConnection, player: list[str], frame: Any) -> dict[str, Any]:
        try:
            m = msgpack.unpackb(frame, raw=False) if isinstance(frame, bytes) else None
        except Exception:
            m = None
        if not isinstance(m, dict):
            return _error(None, "bad_frame", "not a msgpack map")
        t, cid = m.get("t"), m.get("id")
        if not isinstance(t, str) or not isinstance(cid, str):
            return _error(None, "bad_request", "t and id are required")
        if t == "hello":
            return self.hello(player, cid, m)
        if not player:
            return _error(cid, "not_authenticated", "send hello first")
        if t == "ping":
            return {"t": "ok", "re": cid, "server_time": now_ms()}
        if t == "create_hunt":
            return self.create(ws, player[0], cid, m)
        hunt = self.hunts.get(str(m.get("hunt_id")))
        if t not in _HUNT_COMMANDS:
            return _error(cid, "unknown_type", f"t: {t}")
        if hunt is None:
            return _error(cid, "not_found", "no such hunt")
        result = _HUNT_COMMANDS[t](self, ws, hunt, player[0], m)
        if "code" in result:
            return {"t": "error", "re": cid, **result}
        return {"t": "ok", "re": cid, **result}

    def hello(self, player: list[str], cid: str, m: dict[str, Any]) -> dict[str, Any]:
        token = m.get("token")
        if token is not None:
            pid = self.players.get(token)
            if pid is None:
                return _error(cid, "unauthorized", "unknown token")
        else:
            pid = f"p{next(self.ids)}"
            token = f"{pid}.secret{next(self.ids)}"
            self.players[token] = pid
            self.names[pid] = str(m.get("name") or "player")
        player[:] = [pid]
        name, at = self.names[pid], now_ms()
        return {"t": "welcome", "re": cid, "player_id": pid, "name": name, "token": token} | {
            "server_time": at
        }

    def create(self, ws: ServerConnection, pid: str, cid: str, m: dict[str, Any]) -> dict[str, Any]:
        hunt_id = f"h{pid}-{cid}"
        if hunt_id not in self.hunts:
            hunt = Hunt(hunt_id, str(m.get("name")), pid, list(m.get("clues") or []), now_ms())
            self.hunts[hunt_id] = hunt
            hunt.subscribers.add(ws)
            hunt.emit("hunt_created", {"name": hunt.name, "organizer": pid})
        return {"t": "ok", "re": cid, "hunt_id": hunt_id}


def _error(cid: str | None, code: str, message: str) -> dict[str, Any]:
    return {"t": "error", "re": cid, "code": code, "message": message}


def _join(
    b: Baseline, ws: ServerConnection, h: Hunt, pid: str, m: dict[str, Any]
) -> dict[str, Any]:
    if pid == h.organizer:
        return {"code": "forbidden", "message": "the organizer does not play"}
    if h.status == "finished":
        return {"code": "conflict", "message": "the hunt is finished"}
    if pid not in h.members:
        h.members[pid] = Member(b.names[pid])
        h.emit("player_joined", {"player_id": pid, "name": b.names[pid]})
        h.subscribers.add(ws)
    return {"hunt": h.view(), "seq": len(h.frames)}


def _leave(
    b: Baseline, ws: ServerConnection, h: Hunt, pid: str, m: dict[str, Any]
) -> dict[str, Any]:
    if pid not in h.members:
        return {"code": "forbidden", "message": "not a member of this hunt"}
    del h.members[pid]
    h.subscribers.discard(ws)
    h.emit("player_left", {"player_id": pid})
    return {}


def _start(
    b: Baseline, ws: ServerConnection, h: Hunt, pid: str, m: dict[str, Any]
) -> dict[str, Any]:
    if pid != h.organizer:
        return {"code": "forbidden", "message": "only the organizer may do this"}
    if h.status != "lobby":
        return {"code": "conflict", "message": "the hunt is not in its lobby"}
    h.status, h.started_at = "running", now_ms()
    h.emit("hunt_started", {"ends_at": None})
    return {}


def _end(b: Baseline, ws: ServerConnection, h: Hunt, pid: str, m: dict[str, Any]) -> dict[str, Any]:
    if pid != h.organizer:
        return {"code": "forbidden", "message": "only the organizer may do this"}
    if h.status == "finished":
        return {"code": "conflict", "message": "the hunt is finished"}
    _finish(h, "ended")
    return {}


def _finish(h: Hunt, reason: str) -> None:
    h.status = "finished"
    h.emit("hunt_finished", {"reason": reason, "leaderboard": h.leaderboard()})


def _solve(
    b: Baseline, ws: ServerConnection, h: Hunt, pid: str, m: dict[str, Any]
) -> dict[str, Any]:
    me = h.members.get(pid)
    if me is None:
        return {"code": "forbidden", "message": "not a member of this hunt"}
    if h.status != "running":
        return {"code": "conflict", "message": "the hunt is not running"}
    k = m.get("clue")
    if not isinstance(k, int) or not 0 <= k < len(h.clues):
        return {"code": "bad_request", "message": "clue: no such clue in this hunt"}
    clue = h.clues[k]
    if "answer" in clue:
        correct = norm(str(m.get("answer", ""))) == norm(clue["answer"])
    else:
        d = distance_m(m.get("lat", 0.0), m.get("lon", 0.0), clue["lat"], clue["lon"])
        correct = d <= clue.get("radius_m", 25.0)
    if not correct or k in me.solved:
        return {"correct": correct, "points": 0, "score": me.score}
    me.solved.append(k)
    me.score += clue["points"]
    data = {"player_id": pid, "clue": k, "points": clue["points"], "score": me.score}
    h.emit("clue_solved", data)
    if all(len(x.solved) == len(h.clues) for x in h.members.values()):
        _finish(h, "all_solved")
    return {"correct": True, "points": clue["points"], "score": me.score}


def _get(b: Baseline, ws: ServerConnection, h: Hunt, pid: str, m: dict[str, Any]) -> dict[str, Any]:
    return {"hunt": h.view(), "seq": len(h.frames)}


def _resume(
    b: Baseline, ws: ServerConnection, h: Hunt, pid: str, m: dict[str, Any]
) -> dict[str, Any]:
    if pid != h.organizer and pid not in h.members:
        return {"code": "forbidden", "message": "not a member of this hunt"}
    after = m.get("after_seq")
    after = after if isinstance(after, int) and after >= 0 else 0
    for frame in h.frames[after:]:
        broadcast([ws], frame)
    h.subscribers.add(ws)
    return {"seq": len(h.frames)}


_HUNT_COMMANDS = {
    "join_hunt": _join,
    "leave_hunt": _leave,
    "start_hunt": _start,
    "end_hunt": _end,
    "submit_answer": _solve,
    "check_in": _solve,
    "get_hunt": _get,
    "resume": _resume,
}


async def serve_baseline(host: str, port: int) -> None:
    baseline = Baseline()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(baseline.handle, host, port, max_size=64 * 1024, compression=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"baseline ready at ws://{host}:{bound}/", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m server.bots.baseline", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8799, help="0: any free port")
    args = p.parse_args(argv)
    asyncio.run(serve_baseline(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
