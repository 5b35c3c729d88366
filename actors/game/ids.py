"""Entity ids, tokens and stream names."""

from __future__ import annotations

import base64
import hashlib
import secrets
from enum import StrEnum

from protocol.messages import CommandId, HuntId, PlayerId


class EntityKind(StrEnum):
    """The two kinds of entity; the value prefixes stream names and placement keys."""

    HUNT = "hunt"
    PLAYER = "player"


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()


def hunt_id_for(creator: PlayerId, cmd: CommandId) -> HuntId:
    """Derived from creator and command id, so a resent create_hunt names the same hunt."""
    digest = hashlib.blake2b(f"{creator}\x00{cmd}".encode(), digest_size=10).digest()
    return HuntId("h" + _b32(digest))


def new_player_id() -> PlayerId:
    return PlayerId("p" + _b32(secrets.token_bytes(10)))


def new_token(player: PlayerId) -> tuple[str, str]:
    """A fresh token (player id + 192 random bits) and the hash kept of it."""
    secret = secrets.token_urlsafe(24)
    return f"{player}.{secret}", hash_secret(secret)


def split_token(token: str) -> tuple[PlayerId, str] | None:
    player, sep, secret = token.partition(".")
    if not sep or not player or not secret:
        return None
    return PlayerId(player), secret


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hunt_stream(hunt: str) -> str:
    return f"hunt-{hunt}"


def hunt_of_stream(stream: str) -> str:
    return stream.removeprefix("hunt-")


def hunt_replies_stream(hunt: str) -> str:
    return f"hunt-{hunt}-replies"


def player_stream(player: str) -> str:
    return f"player-{player}"
