"""Entity states as versioned bytes, for the store's snapshots."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast

import immutables
import msgpack

from actors.game.events import ClueDef
from actors.game.hunt_state import HuntState, Member, Phase, Recent
from actors.game.player import PlayerState
from protocol.messages import HuntId, PlayerId

PLAYER_VERSION = 1
HUNT_VERSION = 2  # 2: a player's remembered replies as kept (``Recent.packed``); 1 still reads


def _pack(kind: str, version: int, body: dict[str, Any]) -> bytes:
    return cast(bytes, msgpack.packb({"kind": kind, "v": version, "body": body}))


def _unpack(raw: bytes, kind: str, versions: range) -> tuple[int, dict[str, Any]]:
    doc = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if doc.get("kind") != kind or doc.get("v") not in versions:
        raise ValueError(f"not a {kind} snapshot of a version in {list(versions)}")
    return int(doc["v"]), cast(dict[str, Any], doc["body"])


def hunt_to_bytes(state: HuntState, replies_version: int) -> bytes:
    body = {
        "hunt_id": state.hunt_id,
        "name": state.name,
        "organizer": state.organizer,
        "created_at": state.created_at,
        "clues": [asdict(c) for c in state.clues],
        "duration_s": state.duration_s,
        "max_players": state.max_players,
        "phase": state.phase.value,
        "started_at": state.started_at,
        "ends_at": state.ends_at,
        "finished_reason": state.finished_reason,
        "members": [asdict(m) for m in state.members.values()],
        "seq": state.seq,
        "recent": {p: rs.packed() for p, rs in state.recent.items()},
        "replies_version": replies_version,
    }
    return _pack("hunt", HUNT_VERSION, body)


def hunt_from_bytes(raw: bytes) -> tuple[HuntState, int]:
    version, b = _unpack(raw, "hunt", range(1, HUNT_VERSION + 1))
    members = {
        PlayerId(m["player_id"]): Member(**{**m, "solved": tuple(m["solved"])})
        for m in b["members"]
    }
    recent: immutables.Map[PlayerId, Recent] = immutables.Map()
    for p, rs in b["recent"].items():
        mine = Recent.from_packed(*rs) if version >= 2 else Recent.from_data_items(rs.items())
        recent = recent.set(PlayerId(p), mine)
    state = HuntState(
        HuntId(b["hunt_id"]),
        b["name"],
        PlayerId(b["organizer"]),
        b["created_at"],
        tuple(ClueDef(**c) for c in b["clues"]),
        b["duration_s"],
        b["max_players"],
        Phase(b["phase"]),
        b["started_at"],
        b["ends_at"],
        b["finished_reason"],
        members,
        b["seq"],
        recent,
    )
    return state, int(b["replies_version"])


def player_to_bytes(state: PlayerState) -> bytes:
    return _pack("player", PLAYER_VERSION, asdict(state))


def player_from_bytes(raw: bytes) -> PlayerState:
    _, b = _unpack(raw, "player", range(1, PLAYER_VERSION + 1))
    return PlayerState(PlayerId(b["player_id"]), b["name"], b["token_hash"], b["created_at"])
