"""Every event of the game, as versioned data.

Each event class has a ``NAME`` and a ``VERSION``; ``to_record`` turns it into
a plain msgpack-able map for the store and ``from_record`` reads it back,
upcasting older versions through ``UPCASTERS`` (stored events are never
rewritten). ``at`` is the event's time (Unix ms) and travels as the stored
timestamp, not in the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from protocol.messages import CommandId, HuntId, PlayerId

Data = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers: ok (``code`` None) with ``result``, or an error code.

    ``with_view`` asks the host to add the hunt's view and seq when it replies.
    """

    code: str | None = None
    message: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    with_view: bool = False

    @property
    def ok(self) -> bool:
        return self.code is None

    def to_data(self) -> Data:
        if self.code is not None:
            return {"code": self.code, "message": self.message}
        return {"result": dict(self.result), "view": self.with_view}

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> Reply:
        if d.get("code") is not None:
            return cls(code=d["code"], message=d.get("message", ""))
        return cls(result=dict(d.get("result", {})), with_view=bool(d.get("view")))


def rejection(code: str, message: str) -> Reply:
    return Reply(code=code, message=message)


@dataclass(frozen=True, slots=True)
class ClueDef:
    text: str
    points: int
    answer: str | None = None
    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None

    @property
    def kind(self) -> str:
        return "answer" if self.answer is not None else "location"


# ---- hunt events (public: pushed to clients as ``event`` frames) -------------


@dataclass(frozen=True, slots=True)
class HuntCreated:
    NAME: ClassVar[str] = "hunt_created"
    VERSION: ClassVar[int] = 1
    at: int
    hunt_id: HuntId
    name: str
    organizer: PlayerId
    clues: tuple[ClueDef, ...]
    duration_s: int | None
    max_players: int | None

    def public_data(self) -> Data:
        return {
            "hunt_id": self.hunt_id,
            "name": self.name,
            "organizer": self.organizer,
            "clue_count": len(self.clues),
            "duration_s": self.duration_s,
            "max_players": self.max_players,
        }


@dataclass(frozen=True, slots=True)
class PlayerJoined:
    NAME: ClassVar[str] = "player_joined"
    VERSION: ClassVar[int] = 1
    at: int
    player_id: PlayerId
    name: str


@dataclass(frozen=True, slots=True)
class PlayerLeft:
    NAME: ClassVar[str] = "player_left"
    VERSION: ClassVar[int] = 1
    at: int
    player_id: PlayerId


@dataclass(frozen=True, slots=True)
class HuntStarted:
    NAME: ClassVar[str] = "hunt_started"
    VERSION: ClassVar[int] = 1
    at: int
    ends_at: int | None


@dataclass(frozen=True, slots=True)
class ClueSolved:
    NAME: ClassVar[str] = "clue_solved"
    VERSION: ClassVar[int] = 1
    at: int
    player_id: PlayerId
    clue: int
    points: int
    score: int


@dataclass(frozen=True, slots=True)
class HuntFinished:
    NAME: ClassVar[str] = "hunt_finished"
    VERSION: ClassVar[int] = 1
    at: int
    reason: str
    leaderboard: tuple[Mapping[str, Any], ...]


# ---- private events (stored, never pushed) -----------------------------------


@dataclass(frozen=True, slots=True)
class ReplyRecorded:
    """A state-changing command that changed nothing still has its reply kept."""

    NAME: ClassVar[str] = "reply_recorded"
    VERSION: ClassVar[int] = 1
    at: int
    player_id: PlayerId
    cmd: CommandId
    reply: Reply


@dataclass(frozen=True, slots=True)
class PlayerRegistered:
    NAME: ClassVar[str] = "player_registered"
    VERSION: ClassVar[int] = 1
    at: int
    player_id: PlayerId
    name: str
    token_hash: str


HuntEvent = HuntCreated | PlayerJoined | PlayerLeft | HuntStarted | ClueSolved | HuntFinished
PlayerEvent = PlayerRegistered
Event = HuntEvent | ReplyRecorded | PlayerEvent

EVENT_TYPES: dict[str, type[Event]] = {
    cls.NAME: cls
    for cls in (
        HuntCreated,
        PlayerJoined,
        PlayerLeft,
        HuntStarted,
        ClueSolved,
        HuntFinished,
        ReplyRecorded,
        PlayerRegistered,
    )
}

Upcaster = Callable[[Data], Data]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""``(name, version) -> fn`` lifting data of that version to ``version + 1``."""


_FIELDS: dict[type, tuple[str, ...]] = {}


def _data_fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name != "at")
    return names


def to_record(event: Event) -> tuple[str, int, Data]:
    """``(name, version, data)`` for the store; ``at`` goes as the timestamp."""
    data: Data = {}
    for name in _data_fields(type(event)):
        value = getattr(event, name)
        if isinstance(value, Reply):
            value = value.to_data()
        elif name == "clues":
            value = [_clue_data(c) for c in value]
        elif isinstance(value, tuple):
            value = [dict(v) if isinstance(v, Mapping) else v for v in value]
        data[name] = value
    return event.NAME, event.VERSION, data


def _clue_data(c: ClueDef) -> Data:
    return {f.name: getattr(c, f.name) for f in fields(c) if getattr(c, f.name) is not None}


def from_record(name: str, version: int, data: Mapping[str, Any], at: int) -> Event:
    cls = EVENT_TYPES[name]
    d = dict(data)
    while version < cls.VERSION:
        d = UPCASTERS[(name, version)](d)
        version += 1
    if "reply" in d:
        d["reply"] = Reply.from_data(d["reply"])
    if "clues" in d:
        d["clues"] = tuple(ClueDef(**c) for c in d["clues"])
    if "leaderboard" in d:
        d["leaderboard"] = tuple(d["leaderboard"])
    return cls(at=at, **d)


def public_data(event: HuntEvent, record: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """The ``data`` of the event's push frame: never answers or coordinates.

    ``record``: the event's ``to_record`` data, when the caller has made it already."""
    if isinstance(event, HuntCreated):
        return event.public_data()
    return record if record is not None else to_record(event)[2]
