"""A hunt's state, how events change it (``evolve``), and what players see of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from actors.events import (
    ClueDef,
    ClueSolved,
    Event,
    HuntCreated,
    HuntFinished,
    HuntStarted,
    PlayerJoined,
    PlayerLeft,
    Reply,
    ReplyRecorded,
)
from protocol.messages import CommandId, HuntId, PlayerId

RECENT_IDS_PER_PLAYER = 1_000
_NEVER = 2**63


class Phase(StrEnum):
    LOBBY = "lobby"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Member:
    player_id: PlayerId
    name: str
    joined_at: int
    active: bool = True
    score: int = 0
    solved: tuple[int, ...] = ()
    last_solve_at: int | None = None


@dataclass(frozen=True, slots=True)
class HuntState:
    hunt_id: HuntId
    name: str
    organizer: PlayerId
    created_at: int
    clues: tuple[ClueDef, ...]
    duration_s: int | None
    max_players: int | None
    phase: Phase = Phase.LOBBY
    started_at: int | None = None
    ends_at: int | None = None
    finished_reason: str | None = None
    members: Mapping[PlayerId, Member] = field(default_factory=dict)
    seq: int = 0
    recent: Mapping[PlayerId, Mapping[CommandId, Reply]] = field(default_factory=dict)

    def member(self, player: PlayerId) -> Member | None:
        m = self.members.get(player)
        return m if m is not None and m.active else None

    def active_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.active]

    def recent_reply(self, player: PlayerId, cmd: CommandId) -> Reply | None:
        return self.recent.get(player, {}).get(cmd)


def evolve(state: HuntState | None, event: Event) -> HuntState:
    if isinstance(event, HuntCreated):
        return HuntState(
            event.hunt_id,
            event.name,
            event.organizer,
            event.at,
            event.clues,
            event.duration_s,
            event.max_players,
            seq=1,
        )
    if state is None:
        raise ValueError(f"{event.NAME} before hunt_created")
    if isinstance(event, ReplyRecorded):
        return remember(state, event.player_id, event.cmd, event.reply)
    return replace(_apply(state, event), seq=state.seq + 1)


def _apply(state: HuntState, event: Event) -> HuntState:
    match event:
        case PlayerJoined(at=at, player_id=pid, name=name):
            old = state.members.get(pid)
            joined = replace(old, active=True, name=name) if old else Member(pid, name, at)
            return replace(state, members={**state.members, pid: joined})
        case PlayerLeft(player_id=pid):
            left = replace(state.members[pid], active=False)
            return replace(state, members={**state.members, pid: left})
        case HuntStarted(at=at, ends_at=ends_at):
            return replace(state, phase=Phase.RUNNING, started_at=at, ends_at=ends_at)
        case ClueSolved(at=at, player_id=pid, clue=clue, score=score):
            m = state.members[pid]
            solved = replace(m, score=score, solved=(*m.solved, clue), last_solve_at=at)
            return replace(state, members={**state.members, pid: solved})
        case HuntFinished(reason=reason):
            return replace(state, phase=Phase.FINISHED, finished_reason=reason)
    raise ValueError(f"a hunt does not take {type(event).__name__}")


def remember(state: HuntState, player: PlayerId, cmd: CommandId, reply: Reply) -> HuntState:
    """Keep the reply of a state-changing command, the newest 1,000 per player."""
    mine = dict(state.recent.get(player, {}))
    mine[cmd] = reply
    while len(mine) > RECENT_IDS_PER_PLAYER:
        del mine[next(iter(mine))]
    return replace(state, recent={**state.recent, player: mine})


def _rank_key(m: Member) -> tuple[int, int, int, str]:
    last = m.last_solve_at if m.last_solve_at is not None else _NEVER
    return (-m.score, last, m.joined_at, m.player_id)


def entry(m: Member) -> dict[str, Any]:
    return {"player_id": m.player_id, "name": m.name, "score": m.score, "solved": sorted(m.solved)}


def leaderboard(state: HuntState) -> list[dict[str, Any]]:
    """Score descending, then earlier last solve first."""
    return [entry(m) for m in sorted(state.active_members(), key=_rank_key)]


def hunt_view(state: HuntState) -> dict[str, Any]:
    """HUNT_VIEW: clue text hidden in the lobby; answers and coordinates never."""
    hidden = state.phase is Phase.LOBBY
    clues = [
        {"index": i, "kind": c.kind, "points": c.points, "text": None if hidden else c.text}
        for i, c in enumerate(state.clues)
    ]
    return {
        "hunt_id": state.hunt_id,
        "name": state.name,
        "organizer": state.organizer,
        "status": state.phase.value,
        "created_at": state.created_at,
        "started_at": state.started_at,
        "ends_at": state.ends_at,
        "clues": clues,
        "players": leaderboard(state),
        "max_players": state.max_players,
    }
