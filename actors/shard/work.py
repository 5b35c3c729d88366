"""One entity's share of a batch: its speculative state, pending events, answers.

``hunt_work``/``player_work`` run the pure rules for one request and record
what must be stored and said; ``ShardCore`` commits and then answers.

A player takes part in the hunts it created or joined until it leaves: each
ok of those commands carries a link (player -> hunt) that the store keeps
with the hunt's events, so a reconnecting player's hunts are one read away
and no second entity has to be told before the client hears ok.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.game.events import (
    Reply,
    ReplyRecorded,
)
from actors.game.hunt_rules import VIEW_SEQ, Ctx, Tick, apply, decide
from actors.game.hunt_state import HuntState, evolve, hunt_view
from actors.game.ids import hunt_of_stream, hunt_stream, player_stream
from actors.game.player import Authenticate, PlayerState, Register, decide_player, evolve_player
from actors.messages import Request, Resumed, ShardReply, WireReply
from actors.shard.entity import (
    Entity,
    HuntEntity,
    event_frame,
    metadata,
    new_event,
    read_event,
)
from persistence.base import EventStore, Link, NewEvent
from persistence.errors import StoreError
from protocol.errors import ErrorCode
from protocol.messages import CreateHunt, GetHunt, JoinHunt, LeaveHunt, PlayerId, Resume


@dataclass
class Answer:
    gateway: str | None
    req: Request
    reply: WireReply
    stream: int | None  # the stream its events went to; None when it stored nothing
    query: bool = False
    view_at: int | None = None  # a resent join: its hunt view as of this seq
    relink: Link | None = None  # a link written again before this answer (a resend's)
    hunts_of: str | None = None  # a welcome: add this player's hunts, read from the store


@dataclass
class Work:
    entity: Entity
    state: Any
    pending: dict[int, list[NewEvent]] = field(default_factory=lambda: {0: [], 1: []})
    published: list[tuple[int, bytes]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    stored: dict[int, bool] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)  # stored with pending[0]

    def commit(self) -> None:
        e = self.entity
        e.state = self.state
        e.version += len(self.pending[0])
        if isinstance(e, HuntEntity):
            e.replies_version += len(self.pending[1])
            e.frames.extend(self.published)


def render(reply: Reply, state: HuntState | None) -> WireReply:
    if reply.code is not None:
        return {"t": "error", "code": reply.code, "message": reply.message}
    msg = {"t": "ok", **{k: v for k, v in reply.result.items() if k != VIEW_SEQ}}
    if reply.with_view and state is not None:
        msg["hunt"] = hunt_view(state)
        msg["seq"] = state.seq
    return msg


def hunt_work(work: Work, gateway: str | None, req: Request, now: int) -> None:
    if isinstance(req.cmd, GetHunt | Resume):
        work.answers.append(Answer(gateway, req, {}, None, query=True))
        return
    cmd = Tick() if req.cmd is None else req.cmd
    ctx = Ctx(PlayerId(req.player), req.name, now)
    state: HuntState | None = work.state
    decision = decide(state, cmd, ctx)
    stream = None
    if decision.events:
        seq = state.seq if state is not None else 0
        after = apply(state, cmd, ctx, decision)
        public = [e for e in decision.events if not isinstance(e, ReplyRecorded)]
        kept = decision.reply if decision.remembered and not isinstance(cmd, Tick) else None
        for k, event in enumerate(public, 1):
            assert not isinstance(event, ReplyRecorded)
            meta = metadata(cmd.id, req.player, kept if k == len(public) else None)
            stored = new_event(event, meta)
            work.pending[0].append(stored)
            frame = event_frame(after.hunt_id, seq + k, event, stored.data)  # type: ignore[arg-type]
            work.published.append((seq + k, frame))
        for recorded in decision.events:
            if isinstance(recorded, ReplyRecorded):
                work.pending[1].append(new_event(recorded, {}))
        stream = 0 if public else 1
        work.state = after
    link = membership_link(req, decision.reply)
    relink = None
    if link is not None and stream == 0:
        work.links.append(link)
    else:
        relink = link  # a resend (or a join of a member): its link may not have landed
    if gateway is None:
        return
    view_at = decision.reply.result.get(VIEW_SEQ) if decision.duplicate else None
    if view_at is not None and work.state is not None and view_at != work.state.seq:
        work.answers.append(
            Answer(gateway, req, {}, None, query=True, view_at=view_at, relink=relink)
        )
        return
    msg = render(decision.reply, work.state)
    work.answers.append(Answer(gateway, req, msg, stream, relink=relink))


def player_hunts(store: EventStore, player: str) -> list[str]:
    """The hunts the player organizes or has joined: the store's links."""
    return [hunt_of_stream(t) for t in store.linked(player_stream(player))]


def membership_link(req: Request, reply: Reply) -> Link | None:
    """The link an ok of create/join/leave sets, as of the seq its reply gives."""
    if reply.code is not None:
        return None
    seq: Any
    if isinstance(req.cmd, CreateHunt):
        present, seq = True, 1
    elif isinstance(req.cmd, JoinHunt):
        present, seq = True, reply.result.get(VIEW_SEQ)
    elif isinstance(req.cmd, LeaveHunt):
        present, seq = False, reply.result.get("seq")
    else:
        return None
    if not isinstance(seq, int):
        return None
    return Link(player_stream(req.player), hunt_stream(req.entity), present, seq)


def player_work(work: Work, gateway: str | None, req: Request, now: int) -> None:
    state: PlayerState | None = work.state
    decision = decide_player(state, PlayerId(req.entity), req.cmd, now)
    for event in decision.events:
        work.pending[0].append(new_event(event, {}))
        state = evolve_player(state, event)
    work.state = state
    if gateway is not None:
        msg = render(decision.reply, None)
        welcome = isinstance(req.cmd, Register | Authenticate) and msg["t"] == "ok"
        hunts_of = req.entity if welcome else None
        stream = 0 if decision.events else None
        work.answers.append(Answer(gateway, req, msg, stream, hunts_of=hunts_of))


def query_reply(
    entity: Entity, req: Request, store: EventStore, view_at: int | None = None
) -> ShardReply:
    state = entity.state
    if not isinstance(entity, HuntEntity) or not isinstance(state, HuntState):
        return {"t": "error", "code": ErrorCode.NOT_FOUND, "message": "no such hunt"}
    if view_at is not None:
        return _view_as_of(entity, view_at, store)
    if isinstance(req.cmd, GetHunt):
        return {"t": "ok", "hunt": hunt_view(state), "seq": state.seq}
    player = PlayerId(req.player)
    if state.member(player) is None and player != state.organizer:
        return {"t": "error", "code": ErrorCode.FORBIDDEN, "message": "not a member of this hunt"}
    try:
        frames = frames_after(entity, req.cmd.after_seq, store)
    except StoreError:
        return {"t": "error", "code": ErrorCode.UNAVAILABLE, "message": "cannot read events now"}
    return Resumed(state.seq, frames)


def _view_as_of(entity: HuntEntity, seq: int, store: EventStore) -> WireReply:
    """The hunt as it was after event ``seq``, replayed from the store."""
    state: HuntState | None = None
    try:
        for stored in store.read(entity.streams[0]):
            if stored.seq > seq:
                break
            state = evolve(state, read_event(stored))
    except StoreError:
        return {"t": "error", "code": ErrorCode.UNAVAILABLE, "message": "cannot read events now"}
    if state is None:
        return {"t": "error", "code": ErrorCode.INTERNAL, "message": "hunt history is missing"}
    return {"t": "ok", "hunt": hunt_view(state), "seq": seq}


def frames_after(entity: HuntEntity, after: int, store: EventStore) -> list[bytes]:
    cached = entity.frames
    if cached and cached[0][0] <= after + 1:
        return [frame for seq, frame in cached if seq > after]
    frames = []
    for stored in store.read(entity.streams[0], after):
        if stored.seq > entity.version:
            break
        frames.append(event_frame(entity.id, stored.seq, read_event(stored)))  # type: ignore[arg-type]
    return frames
