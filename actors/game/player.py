"""A player's rules: registration and its token.

The player entity answers ``hello`` (``Register``, ``Authenticate``). The
hunts it organizes or has joined are not its state: the hunts' own commits
link them to the player in the store (see ``actors.shard.work``), and the shard
adds them to the welcome.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from actors.game.events import PlayerEvent, PlayerRegistered, Reply, rejection
from protocol.errors import ErrorCode
from protocol.messages import PlayerId


@dataclass(frozen=True, slots=True)
class PlayerState:
    player_id: PlayerId
    name: str
    token_hash: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    token_hash: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    token_hash: str


PlayerCommand = Register | Authenticate


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
    if not hmac.compare_digest(cmd.token_hash, state.token_hash):
        return PlayerDecision((), rejection(ErrorCode.UNAUTHORIZED, "unknown token"))
    return PlayerDecision((), _welcome(state))


def _welcome(state: PlayerState) -> Reply:
    return Reply(result={"name": state.name})


def evolve_player(state: PlayerState | None, event: PlayerEvent) -> PlayerState:
    if state is not None:
        raise ValueError(f"{event.NAME} of a registered player")
    return PlayerState(event.player_id, event.name, event.token_hash, event.at)
