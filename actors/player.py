"""A player's rules: registration, its token, and the hunts it belongs to.

The player entity answers ``hello`` with a token (``Authenticate``) and keeps
the hunts the player organizes or has joined, so a reconnect restores the
connection's subscriptions. Hunts tell it of membership changes with their
seq, so a note that arrives twice or late changes nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from actors.events import MembershipChanged, PlayerEvent, PlayerRegistered, Reply, rejection
from protocol.errors import ErrorCode
from protocol.messages import HuntId, PlayerId


@dataclass(frozen=True, slots=True)
class PlayerState:
    player_id: PlayerId
    name: str
    token_hash: str
    created_at: int
    hunts: Mapping[HuntId, tuple[bool, int]] = field(default_factory=dict)
    """hunt -> (member, seq of the hunt event that said so)"""

    def member_of(self) -> list[HuntId]:
        return sorted(h for h, (member, _) in self.hunts.items() if member)


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    token_hash: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    token_hash: str


@dataclass(frozen=True, slots=True)
class NoteMembership:
    hunt_id: HuntId
    member: bool
    hunt_seq: int


PlayerCommand = Register | Authenticate | NoteMembership


@dataclass(frozen=True, slots=True)
class PlayerDecision:
    events: tuple[PlayerEvent, ...]
    reply: Reply


def decide_player(
    state: PlayerState | None, player: PlayerId, cmd: PlayerCommand, now: int
) -> PlayerDecision:
    if isinstance(cmd, Register):
        if state is not None:
            return PlayerDecision((), _welcome(state))
        registered = PlayerRegistered(now, player, cmd.name, cmd.token_hash)
        return PlayerDecision((registered,), _welcome(evolve_player(None, registered)))
    if state is None:
        return PlayerDecision((), rejection(ErrorCode.UNAUTHORIZED, "unknown token"))
    if isinstance(cmd, Authenticate):
        if not hmac.compare_digest(cmd.token_hash, state.token_hash):
            return PlayerDecision((), rejection(ErrorCode.UNAUTHORIZED, "unknown token"))
        return PlayerDecision((), _welcome(state))
    _, seen = state.hunts.get(cmd.hunt_id, (False, 0))
    if cmd.hunt_seq <= seen:
        return PlayerDecision((), Reply())
    return PlayerDecision((MembershipChanged(now, cmd.hunt_id, cmd.member, cmd.hunt_seq),), Reply())


def _welcome(state: PlayerState) -> Reply:
    return Reply(result={"name": state.name, "hunts": state.member_of()})


def evolve_player(state: PlayerState | None, event: PlayerEvent) -> PlayerState:
    if isinstance(event, PlayerRegistered):
        return PlayerState(event.player_id, event.name, event.token_hash, event.at)
    if state is None:
        raise ValueError(f"{event.NAME} before player_registered")
    hunts = {**state.hunts, event.hunt_id: (event.member, event.hunt_seq)}
    return replace(state, hunts=hunts)
