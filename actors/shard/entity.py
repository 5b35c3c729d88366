"""Entities as the shard holds them: committed state, stream versions, activity.

``load_hunt``/``load_player`` activate an entity from its latest snapshot and
the events after it. Pure rules decide; these classes only remember where the
streams stand and what the entity has recently said.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from actors.game.events import (
    ClueSolved,
    Event,
    HuntCreated,
    HuntEvent,
    HuntFinished,
    HuntStarted,
    PlayerJoined,
    PlayerLeft,
    PlayerRegistered,
    Reply,
    ReplyRecorded,
    from_record,
    public_data,
    to_record,
)
from actors.game.hunt_state import HuntState, evolve, remember
from actors.game.ids import EntityKind, hunt_replies_stream, hunt_stream, player_stream
from actors.game.player import PlayerState, evolve_player
from actors.game.snapshots import hunt_from_bytes, hunt_to_bytes, player_from_bytes, player_to_bytes
from persistence.base import EventStore, Json, NewEvent, StoredEvent
from protocol.codec import encode
from protocol.messages import CommandId, EventPush, PlayerId

RECENT_FRAMES = 256
HUNT_EVENTS = (HuntCreated, PlayerJoined, PlayerLeft, HuntStarted, ClueSolved, HuntFinished)


@dataclass
class Activity:
    messages: int = 0
    last_active: float = 0.0
    activated_at: float = 0.0


@dataclass
class HuntEntity:
    id: str
    state: HuntState | None = None
    version: int = 0
    replies_version: int = 0
    snapshot_seq: int = 0
    frames: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=RECENT_FRAMES))
    activity: Activity = field(default_factory=Activity)

    kind = EntityKind.HUNT

    @property
    def streams(self) -> tuple[str, str]:
        return hunt_stream(self.id), hunt_replies_stream(self.id)

    def snapshot(self) -> bytes:
        assert self.state is not None
        return hunt_to_bytes(self.state, self.replies_version)


@dataclass
class PlayerEntity:
    id: str
    state: PlayerState | None = None
    version: int = 0
    snapshot_seq: int = 0
    activity: Activity = field(default_factory=Activity)

    kind = EntityKind.PLAYER

    @property
    def streams(self) -> tuple[str]:
        return (player_stream(self.id),)

    def snapshot(self) -> bytes:
        assert self.state is not None
        return player_to_bytes(self.state)


Entity = HuntEntity | PlayerEntity


def metadata(cmd: str, player: str, reply: Reply | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"cmd": cmd, "player": player}
    if reply is not None:
        meta["reply"] = reply.to_data()
    return meta


def new_event(event: Event, meta: dict[str, Any]) -> NewEvent:
    name, version, data = to_record(event)
    return NewEvent(name, version, data, event.at, meta)


def read_event(stored: StoredEvent) -> Event:
    return from_record(stored.type, stored.version, stored.data, stored.timestamp)


def event_frame(hunt_id: str, seq: int, event: HuntEvent, record: Json | None = None) -> bytes:
    """The push frame of ``event``; ``record``: its data as stored, if made already."""
    data = public_data(event, record)
    return encode(EventPush(hunt_id, seq, event.NAME, event.at, data))


def load_hunt(store: EventStore, hunt_id: str) -> HuntEntity:
    entity = HuntEntity(hunt_id)
    main, replies = entity.streams
    snap = store.load_snapshot(main)
    if snap is not None:
        entity.state, entity.replies_version = hunt_from_bytes(snap.state)
        entity.version = entity.snapshot_seq = snap.seq
    for stored in store.read(main, entity.version):
        event = read_event(stored)
        entity.state = evolve(entity.state, event)
        entity.version = stored.seq
        reply = stored.metadata.get("reply")
        if reply is not None:
            player, cmd = stored.metadata["player"], stored.metadata["cmd"]
            entity.state = remember(
                entity.state, PlayerId(player), CommandId(cmd), Reply.from_data(reply)
            )
        if not isinstance(event, HUNT_EVENTS):
            raise ValueError(f"{stored.type} in {main}")
        entity.frames.append((stored.seq, event_frame(hunt_id, stored.seq, event)))
    for stored in store.read(replies, entity.replies_version):
        recorded = read_event(stored)
        assert isinstance(recorded, ReplyRecorded)
        entity.state = evolve(entity.state, recorded)
        entity.replies_version = stored.seq
    return entity


def load_player(store: EventStore, player_id: str) -> PlayerEntity:
    entity = PlayerEntity(player_id)
    (stream,) = entity.streams
    snap = store.load_snapshot(stream)
    if snap is not None:
        entity.state = player_from_bytes(snap.state)
        entity.version = entity.snapshot_seq = snap.seq
    for stored in store.read(stream, entity.version):
        event = read_event(stored)
        if not isinstance(event, PlayerRegistered):
            raise ValueError(f"{stored.type} in {stream}")
        entity.state = evolve_player(entity.state, event)
        entity.version = stored.seq
    return entity
