"""A hunt's state, how events change it (``evolve``), and what players see of it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, cast

import immutables
import msgpack

from actors.game.events import (
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
from persistence.codec import pack_any
from protocol.messages import CommandId, HuntId, PlayerId

RECENT_IDS_PER_PLAYER = 1_000
_Slotted = TypeVar("_Slotted", "HuntState", "Member")
_NEVER = 2**63


class Recent:
    """One player's remembered replies in a hunt: the newest ``RECENT_IDS_PER_PLAYER``.

    A persistent (HAMT) map, so remembering one more reply makes a new value that
    shares the rest with the old one: copying a 1,000-entry dict on every command
    cost the shards CPU and young-generation collections. Each entry is its order
    and its reply packed with msgpack (~40 bytes, not ~400 bytes of objects). Entries
    older than the newest 1,000 are dropped in bulk every ``TRIM_SLACK`` additions
    and ignored until then, so the map is one structure and behaves exactly as a
    bounded ordered dict. Its order travels packed with the reply: no tuple and int
    objects per entry. Equal when they hold the same replies in the same order.
    """

    __slots__ = ("_by_cmd", "_next")
    TRIM_SLACK = 200

    def __init__(
        self, by_cmd: immutables.Map[CommandId, bytes] | None = None, next_n: int = 0
    ) -> None:
        # cmd -> packed (n, reply)
        self._by_cmd = immutables.Map() if by_cmd is None else by_cmd
        self._next = next_n

    def _unpack(self, packed: bytes) -> tuple[int, Any] | None:
        """Its order and reply data, or None when it is older than the newest 1,000."""
        n, data = msgpack.unpackb(packed)
        return (n, data) if n >= self._next - RECENT_IDS_PER_PLAYER else None

    def _entry(self, cmd: CommandId) -> tuple[int, Any] | None:
        packed = self._by_cmd.get(cmd)
        return None if packed is None else self._unpack(packed)

    def get(self, cmd: CommandId) -> Reply | None:
        entry = self._entry(cmd)
        return None if entry is None else Reply.from_data(entry[1])

    def add(self, cmd: CommandId, reply: Reply) -> Recent:
        known = self._entry(cmd)
        if known is not None:  # as a dict would: the new reply, the old place
            value = pack_any((known[0], reply.to_data()))
            return Recent(self._by_cmd.set(cmd, value), self._next)
        by_cmd = self._by_cmd.set(cmd, pack_any((self._next, reply.to_data())))
        recent = Recent(by_cmd, self._next + 1)
        if len(by_cmd) > RECENT_IDS_PER_PLAYER + self.TRIM_SLACK:
            kept = {c: p for c, p in by_cmd.items() if recent._unpack(p) is not None}
            recent = Recent(immutables.Map(kept), recent._next)
        return recent

    def items(self) -> Iterator[tuple[CommandId, Reply]]:
        """Oldest first."""
        for cmd, data in self.data_items():
            yield cmd, Reply.from_data(data)

    def packed(self) -> tuple[int, dict[CommandId, bytes]]:
        """Its counter and entries as they are kept, for a snapshot: no entry is unpacked,
        as unpacking a thousand small rows made snapshots costly."""
        return self._next, dict(self._by_cmd)

    @classmethod
    def from_packed(cls, next_n: int, by_cmd: dict[CommandId, bytes]) -> Recent:
        """The inverse of ``packed``."""
        return cls(immutables.Map(by_cmd), next_n)

    @classmethod
    def from_data_items(cls, items: Iterable[tuple[CommandId, Any]]) -> Recent:
        """The inverse of ``data_items``."""
        by_cmd = {cmd: pack_any((n, data)) for n, (cmd, data) in enumerate(items)}
        return cls(immutables.Map(by_cmd), len(by_cmd))

    def data_items(self) -> list[tuple[CommandId, Any]]:
        """Oldest first, each reply as ``Reply.to_data`` made it: what a snapshot stores,
        without making and unmaking a ``Reply`` per entry (a snapshot writes 1,000)."""
        entries = []
        for cmd, packed in self._by_cmd.items():
            entry = self._unpack(packed)
            if entry is not None:
                entries.append((entry[0], cmd, entry[1]))
        entries.sort(key=lambda e: e[0])
        return [(cmd, data) for _, cmd, data in entries]

    def __len__(self) -> int:
        return min(len(self._by_cmd), RECENT_IDS_PER_PLAYER, self._next)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recent):
            return NotImplemented
        return list(self.items()) == list(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Recent({dict(self.items())!r})"


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
    recent: Mapping[PlayerId, Recent] = field(default_factory=immutables.Map)

    def member(self, player: PlayerId) -> Member | None:
        m = self.members.get(player)
        return m if m is not None and m.active else None

    def active_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.active]

    def recent_reply(self, player: PlayerId, cmd: CommandId) -> Reply | None:
        mine = self.recent.get(player)
        return None if mine is None else mine.get(cmd)


Kept = tuple[PlayerId, CommandId, Reply]
"""A reply to remember: the player, its command id, and the reply."""


def evolve(state: HuntState | None, event: Event, keep: Kept | None = None) -> HuntState:
    """The state after ``event``; with ``keep``, the reply of the command that made the
    event is remembered in the same copy of the state (see ``remember``)."""
    if isinstance(event, HuntCreated):
        if keep is not None:
            raise ValueError("hunt_created remembers its reply after it is made")
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
        if keep is not None:
            raise ValueError("a reply_recorded is the remembered reply")
        return remember(state, event.player_id, event.cmd, event.reply)
    changes = _changes(state, event)
    if keep is not None:
        changes["recent"] = _recent_with(state, *keep)
    return changed(state, seq=state.seq + 1, **changes)


def _changes(state: HuntState, event: Event) -> dict[str, Any]:
    match event:
        case PlayerJoined(at=at, player_id=pid, name=name):
            old = state.members.get(pid)
            joined = changed(old, active=True, name=name) if old else Member(pid, name, at)
            return {"members": {**state.members, pid: joined}}
        case PlayerLeft(player_id=pid):
            left = changed(state.members[pid], active=False)
            return {"members": {**state.members, pid: left}}
        case HuntStarted(at=at, ends_at=ends_at):
            return {"phase": Phase.RUNNING, "started_at": at, "ends_at": ends_at}
        case ClueSolved(at=at, player_id=pid, clue=clue, score=score):
            m = state.members[pid]
            solved = changed(m, score=score, solved=(*m.solved, clue), last_solve_at=at)
            return {"members": {**state.members, pid: solved}}
        case HuntFinished(reason=reason):
            return {"phase": Phase.FINISHED, "finished_reason": reason}
    raise ValueError(f"a hunt does not take {type(event).__name__}")


def changed(value: _Slotted, **changes: Any) -> _Slotted:
    """``dataclasses.replace`` for the slotted state classes, cheaper (it runs at every event).

    ``replace`` walks ``fields()`` and checks each field's kind on every call, a
    visible share of the shards' rules' CPU (docs/performance.md). This copies the
    slots as they are (none of these classes has a ``__post_init__``), changing the
    ones named, with a copier made for the class (``_copier``).
    """
    cls = type(value)
    if not _SLOTS[cls].issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field {', '.join(set(changes) - _SLOTS[cls])}")
    copy: Callable[[_Slotted, dict[str, Any]], _Slotted] = _COPIERS[cls]
    return copy(value, changes)


def _copier(cls: type, slots: Iterable[str]) -> Callable[[Any, dict[str, Any]], Any]:
    """A function that copies a ``cls`` with some slots changed, one statement per slot
    as dataclasses writes ``__init__``: faster than a loop over the slots, and a hunt's
    state is copied at every event."""
    lines = ["def copy(value, changes):", "    new = _new(cls)"]
    lines += [
        f"    _set(new, {name!r}, changes[{name!r}] if {name!r} in changes else value.{name})"
        for name in slots
    ]
    lines.append("    return new")
    namespace: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "cls": cls}
    exec("\n".join(lines), namespace)
    return cast(Callable[[Any, dict[str, Any]], Any], namespace["copy"])


_SLOTS = {cls: frozenset(cls.__slots__) for cls in (HuntState, Member)}
_COPIERS = {cls: _copier(cls, cls.__slots__) for cls in (HuntState, Member)}


def remember(state: HuntState, player: PlayerId, cmd: CommandId, reply: Reply) -> HuntState:
    """Keep the reply of a state-changing command, the newest 1,000 per player."""
    return changed(state, recent=_recent_with(state, player, cmd, reply))


def _recent_with(
    state: HuntState, player: PlayerId, cmd: CommandId, reply: Reply
) -> immutables.Map[PlayerId, Recent]:
    recent = (
        state.recent if isinstance(state.recent, immutables.Map) else immutables.Map(state.recent)
    )
    mine = recent.get(player) or Recent()
    return recent.set(player, mine.add(cmd, reply))


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
