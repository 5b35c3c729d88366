"""Typed wire messages of protocol version 1 (docs/protocol.md).

Commands come from clients; ``Welcome``, ``Ok``, ``Error`` and ``EventPush``
go to them. Every class is a frozen dataclass; ``TYPE`` is the wire ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NewType

HuntId = NewType("HuntId", str)
PlayerId = NewType("PlayerId", str)
CommandId = NewType("CommandId", str)

DEFAULT_RADIUS_M = 25.0


@dataclass(frozen=True, slots=True)
class AnswerClue:
    text: str
    answer: str
    points: int


@dataclass(frozen=True, slots=True)
class LocationClue:
    text: str
    lat: float
    lon: float
    points: int
    radius_m: float = DEFAULT_RADIUS_M


Clue = AnswerClue | LocationClue


@dataclass(frozen=True, slots=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    id: CommandId
    protocol: int
    name: str | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class CreateHunt:
    TYPE: ClassVar[str] = "create_hunt"
    id: CommandId
    name: str
    clues: tuple[Clue, ...]
    duration_s: int | None = None
    max_players: int | None = None


@dataclass(frozen=True, slots=True)
class JoinHunt:
    TYPE: ClassVar[str] = "join_hunt"
    id: CommandId
    hunt_id: HuntId


@dataclass(frozen=True, slots=True)
class LeaveHunt:
    TYPE: ClassVar[str] = "leave_hunt"
    id: CommandId
    hunt_id: HuntId


@dataclass(frozen=True, slots=True)
class StartHunt:
    TYPE: ClassVar[str] = "start_hunt"
    id: CommandId
    hunt_id: HuntId


@dataclass(frozen=True, slots=True)
class EndHunt:
    TYPE: ClassVar[str] = "end_hunt"
    id: CommandId
    hunt_id: HuntId


@dataclass(frozen=True, slots=True)
class SubmitAnswer:
    TYPE: ClassVar[str] = "submit_answer"
    id: CommandId
    hunt_id: HuntId
    clue: int
    answer: str


@dataclass(frozen=True, slots=True)
class CheckIn:
    TYPE: ClassVar[str] = "check_in"
    id: CommandId
    hunt_id: HuntId
    clue: int
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class GetHunt:
    TYPE: ClassVar[str] = "get_hunt"
    id: CommandId
    hunt_id: HuntId


@dataclass(frozen=True, slots=True)
class Resume:
    TYPE: ClassVar[str] = "resume"
    id: CommandId
    hunt_id: HuntId
    after_seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    id: CommandId


HuntCommand = JoinHunt | LeaveHunt | StartHunt | EndHunt | SubmitAnswer | CheckIn | GetHunt | Resume
Command = Hello | CreateHunt | Ping | HuntCommand

STATE_CHANGING = frozenset(
    {
        "create_hunt",
        "join_hunt",
        "start_hunt",
        "submit_answer",
        "check_in",
        "leave_hunt",
        "end_hunt",
    }
)


@dataclass(frozen=True, slots=True)
class Welcome:
    TYPE: ClassVar[str] = "welcome"
    re: str
    player_id: str
    name: str
    token: str
    server_time: int


@dataclass(frozen=True, slots=True)
class Ok:
    """``{"t": "ok", "re": ..., **result}``: the result's keys sit beside ``t``."""

    TYPE: ClassVar[str] = "ok"
    re: str
    result: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Error:
    TYPE: ClassVar[str] = "error"
    re: str | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class EventPush:
    TYPE: ClassVar[str] = "event"
    hunt_id: str
    seq: int
    kind: str
    at: int
    data: Mapping[str, Any]


ServerMessage = Welcome | Ok | Error | EventPush
