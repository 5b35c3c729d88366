"""What a shard tells an admin about itself and its entities (read-only, plain data)."""

from __future__ import annotations

import os
from typing import Any

from actors.entity import HuntEntity
from actors.hunt_state import HuntState
from actors.messages import Inspect
from actors.shard import ShardCore


def inspect_shard(core: ShardCore, msg: Inspect, memory_kb: int) -> Any:
    if msg.what == "shard":
        kinds: dict[str, int] = {}
        for kind, _ in core.entities:
            kinds[kind] = kinds.get(kind, 0) + 1
        return {
            "index": core.index,
            "pid": os.getpid(),
            "memory_kb": memory_kb,
            "entities": kinds,
            "subscribed_hunts": len(core.subs),
            **core.stats.__dict__,
        }
    if msg.what == "entity":
        key = (msg.args["kind"], msg.args["id"])
        entity = core.entities.get(key)
        if entity is None:
            return {"active": False}
        state = entity.state
        data: dict[str, Any] = {
            "active": True,
            "version": entity.version,
            "snapshot_seq": entity.snapshot_seq,
            "messages": entity.activity.messages,
            "last_active": entity.activity.last_active,
        }
        if isinstance(entity, HuntEntity) and isinstance(state, HuntState):
            data["status"] = state.phase.value
            data["players"] = len(state.active_members())
        return data
    raise ValueError(f"a shard does not answer {msg.what!r}")
