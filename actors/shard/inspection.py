"""What a shard tells an admin about itself and its entities (read-only, plain data).

Every answer is plain data (dicts, lists, str, numbers) so it pickles across
Thespian and serialises to JSON unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from enum import Enum
from itertools import islice
from typing import Any

from actors.game.hunt_state import HuntState, hunt_view, leaderboard
from actors.game.ids import EntityKind, hunt_stream, player_stream
from actors.messages import Inspect
from actors.shard.core import APPEND_BUCKETS, BATCH_BUCKETS, ShardCore
from actors.shard.entity import Entity, HuntEntity, PlayerEntity
from actors.shard.work import player_hunts
from persistence.errors import StoreError

MAILBOX_NOTE = (
    "Commands reach a shard on its channel from the gateway, and a shard handles all "
    "that is ready to the end before it reads more, so nothing of this entity waits "
    "inside the shard while it answers. Requests still on their way are counted by "
    "the gateway (in_flight)."
)
EVENTS_LIMIT = 1000


def inspect_shard(core: ShardCore, msg: Inspect, host: Mapping[str, Any]) -> Any:
    args = msg.args
    if msg.what == "shard":
        return shard_facts(core, host)
    if msg.what == "entities":
        return list_entities(core, args.get("kind"))
    if msg.what == "entity":
        return entity_facts(core, args["kind"], args["id"], bool(args.get("activate")))
    if msg.what == "events":
        after, limit = int(args.get("after", 0)), int(args.get("limit", 100))
        return read_events(core, args["kind"], args["id"], after, limit)
    raise ValueError(f"a shard does not answer {msg.what!r}")


def shard_facts(core: ShardCore, host: Mapping[str, Any]) -> dict[str, Any]:
    kinds: dict[str, int] = {k.value: 0 for k in EntityKind}
    for kind, _ in core.entities:
        kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "index": core.index,
        "pid": os.getpid(),
        "memory_kb": rss_kb(),
        "entities": kinds,
        "subscribed_hunts": sum(1 for gws in core.subs.values() if gws),
        "batch_buckets": list(BATCH_BUCKETS),
        "append_buckets": list(APPEND_BUCKETS),
        **dict(host),
        **dataclasses.asdict(core.stats),
    }


def list_entities(core: ShardCore, kind: str | None) -> list[dict[str, Any]]:
    return [summary(core, e) for (k, _), e in core.entities.items() if kind is None or k == kind]


def summary(core: ShardCore, entity: Entity) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": entity.kind,
        "id": entity.id,
        "shard": core.index,
        "version": entity.version,
        "snapshot_seq": entity.snapshot_seq,
        "messages": entity.activity.messages,
        "last_active": entity.activity.last_active,
        "activated_at": entity.activity.activated_at,
    }
    state = entity.state
    if isinstance(state, HuntState):
        data.update(name=state.name, status=state.phase.value)
        data["players"] = len(state.active_members())
        data["leaderboard"] = leaderboard(state)[:10]
        data["subscribers"] = sorted(core.subs.get(entity.id, ()))
    elif state is not None:
        data["name"] = state.name
    return data


def entity_facts(core: ShardCore, kind: str, entity_id: str, activate: bool) -> dict[str, Any]:
    entity = core.entities.get((kind, entity_id))
    activated = False
    if entity is None:
        if not activate:
            return {"found": None, "active": False, "shard": core.index}
        entity = core._load((kind, entity_id))
        activated = True
        if entity.state is None:
            del core.entities[(kind, entity_id)]
            core.stats.activations -= 1  # nothing was activated: there is no such entity
            return {"found": False, "active": False, "shard": core.index}
    data = summary(core, entity)
    data.update(
        found=True,
        active=True,
        activated_now=activated,
        state=state_of(entity),
        mailbox={"depth": 0, "note": MAILBOX_NOTE},
    )
    if isinstance(entity, HuntEntity):
        data["replies_version"] = entity.replies_version
        data["recent_frames"] = len(entity.frames)
    else:
        try:  # not its state: the store's links, written by the hunts
            data["hunts"] = player_hunts(core.store, entity.id)
        except StoreError as exc:
            data["hunts"] = f"(cannot read: {exc})"
    return data


def state_of(entity: Entity) -> Any:
    state = entity.state
    if isinstance(entity, HuntEntity) and isinstance(state, HuntState):
        view = hunt_view(state)
        full = plain(state)
        full["recent"] = {p: len(r) for p, r in state.recent.items()}
        full["leaderboard"] = leaderboard(state)
        return {**full, "view": view}
    if isinstance(entity, PlayerEntity) and state is not None:
        doc = plain(state)
        doc["token_hash"] = "(hidden)"
        return doc
    return None


def read_events(
    core: ShardCore, kind: str, entity_id: str, after: int, limit: int
) -> dict[str, Any]:
    stream = hunt_stream(entity_id) if kind == EntityKind.HUNT else player_stream(entity_id)
    limit = max(1, min(limit, EVENTS_LIMIT))
    events = [
        {
            "seq": e.seq,
            "type": e.type,
            "version": e.version,
            "at": e.timestamp,
            "data": plain(e.data),
            "metadata": plain(e.metadata),
        }
        for e in islice(core.store.read(stream, after), limit)
    ]
    return {"stream": stream, "after": after, "limit": limit, "events": events}


def plain(value: Any) -> Any:
    """Dataclasses, enums, mappings and sequences as JSON-able data."""
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def rss_kb() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024
