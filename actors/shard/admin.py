"""What an admin may do to a shard's entities: passivate, snapshot, end a hunt.

Ending a hunt goes through the hunt's own rules (``AdminEnd``) and the shard's
normal batch, so it is stored, published and told to players like any move.
"""

from __future__ import annotations

import secrets
from typing import Any

from actors.game.hunt_rules import AdminEnd
from actors.game.ids import EntityKind
from actors.messages import Request, as_wire
from actors.shard.core import Output, ShardCore
from protocol.messages import CommandId

ADMIN_GATEWAY = "~admin"


def passivate(core: ShardCore, kind: EntityKind, entity_id: str) -> dict[str, Any]:
    entity = core.entities.pop((kind, entity_id), None)
    if entity is None:
        return {"passivated": False, "reason": "not active"}
    core.snapshot_now(entity)
    core.stats.passivations += 1
    return {"passivated": True, "version": entity.version, "snapshot_seq": entity.snapshot_seq}


def snapshot(core: ShardCore, kind: EntityKind, entity_id: str) -> dict[str, Any]:
    key = (kind, entity_id)
    entity = core.entities.get(key)
    activated = entity is None
    if entity is None:
        entity = core._load(key)
    if entity.state is None:
        del core.entities[key]
        return {"found": False}
    core.snapshot_now(entity)
    return {"found": True, "snapshot_seq": entity.snapshot_seq, "activated_now": activated}


def end_hunt(core: ShardCore, hunt_id: str) -> tuple[dict[str, Any], Output]:
    """The hunt's reply and the shard's output (events to publish, notes to send)."""
    cmd = AdminEnd(CommandId(f"admin-{secrets.token_hex(6)}"))
    out = core.handle(ADMIN_GATEWAY, [Request(0, EntityKind.HUNT, hunt_id, cmd)])
    replies = out.replies.pop(ADMIN_GATEWAY, [])
    reply = (
        as_wire(replies[0][1])
        if replies
        else {"t": "error", "code": "internal", "message": "no reply"}
    )
    return {**reply, "cmd_id": cmd.id}, out
